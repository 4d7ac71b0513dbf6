"""gpu-rdma-injector: keeps the Multus networks annotation and the SR-IOV resource together."""

__version__ = "0.1.0"
