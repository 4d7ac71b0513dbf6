"""The benchmark harness of issue 5 (`benchmarks/run`): not part of the webhook package.

It measures the real `gpu-rdma-injector serve` process over real TLS against a floor (nginx
returning a canned AdmissionReview response with the same certificate). See README.md here.
"""
