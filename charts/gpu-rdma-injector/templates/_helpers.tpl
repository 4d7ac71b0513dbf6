{{/*
Chart name, truncated to 63 characters (the limit of a label value).
*/}}
{{- define "gpu-rdma-injector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects, truncated to 63 characters: the Service is named after it and
a Service name is a DNS label. A release name that already contains the chart name is used as is.
*/}}
{{- define "gpu-rdma-injector.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version for the helm.sh/chart label.
*/}}
{{- define "gpu-rdma-injector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: stable across upgrades (a Deployment's selector is immutable).
*/}}
{{- define "gpu-rdma-injector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gpu-rdma-injector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Standard labels of every object, plus .Values.commonLabels.
*/}}
{{- define "gpu-rdma-injector.labels" -}}
helm.sh/chart: {{ include "gpu-rdma-injector.chart" . }}
{{ include "gpu-rdma-injector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: webhook
app.kubernetes.io/part-of: gpu-rdma-injector
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
metadata.annotations from .Values.commonAnnotations merged with the object's own (passed as
"extra"; the object's own win). Renders nothing when both are empty. Usage:
  {{- with include "gpu-rdma-injector.annotations" (dict "context" . "extra" $own) }}{{ . | nindent 2 }}{{ end }}
*/}}
{{- define "gpu-rdma-injector.annotations" -}}
{{- $all := merge (dict) (.extra | default dict) (.context.Values.commonAnnotations | default dict) }}
{{- with $all -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "gpu-rdma-injector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gpu-rdma-injector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false: name an existing ServiceAccount in the release namespace." .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gpu-rdma-injector.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Object names derived from the full name.
*/}}
{{- define "gpu-rdma-injector.policyConfigMapName" -}}
{{- printf "%s-policy" (include "gpu-rdma-injector.fullname" .) }}
{{- end }}

{{/*
The Secret holding the serving certificate: the webhook's own in self-signed mode, cert-manager's
in cert-manager mode, the user's in secret mode, the service-ca operator's in service-ca mode.
service-ca gets a name of its own: it refuses to fill a Secret it did not create (the one a
self-signed install keeps with helm.sh/resource-policy: keep, or cert-manager's), so switching
modes on a running release must not land on an existing name.
*/}}
{{- define "gpu-rdma-injector.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "secret" }}
{{- .Values.certificates.secret.name }}
{{- else if eq .Values.certificates.mode "service-ca" }}
{{- printf "%s-service-ca-tls" (include "gpu-rdma-injector.fullname" .) }}
{{- else }}
{{- printf "%s-tls" (include "gpu-rdma-injector.fullname" .) }}
{{- end }}
{{- end }}

{{/*
Name of the MutatingWebhookConfiguration. The API server calls mutating webhook configurations in
the order of their names (then each one's webhooks in list order), so the name decides whether
this webhook runs before or after the SR-IOV operator's network-resources-injector-config. The
default "zz-<fullname>" sorts after it (and after nearly everything else), whatever the release
name: see "Webhook order" in the chart's README for why last is right.
*/}}
{{- define "gpu-rdma-injector.webhookConfigurationName" -}}
{{- .Values.webhook.configurationName | default (printf "zz-%s" (include "gpu-rdma-injector.fullname" .)) }}
{{- end }}

{{/* The SR-IOV network operator's injector registration; the chart's name sorts after it. */}}
{{- define "gpu-rdma-injector.peerInjectorConfigurationName" -}}
network-resources-injector-config
{{- end }}

{{/* "true" when the cluster serves OpenShift's security API (SecurityContextConstraints). */}}
{{- define "gpu-rdma-injector.isOpenShift" -}}
{{- if .Capabilities.APIVersions.Has "security.openshift.io/v1" }}true{{ end }}
{{- end }}

{{/*
"true" when the pod must leave its user and group IDs to OpenShift's SCC: restricted-v2 assigns
runAsUser and fsGroup from the namespace's ranges and rejects fixed IDs outside them.
*/}}
{{- define "gpu-rdma-injector.adaptSecurityContext" -}}
{{- $adapt := .Values.openshift.adaptSecurityContext }}
{{- if or (eq $adapt "force") (and (eq $adapt "auto") (include "gpu-rdma-injector.isOpenShift" .)) }}true{{ end }}
{{- end }}

{{/*
A securityContext (the argument's "context") without runAsUser, runAsGroup and fsGroup when
OpenShift adaptation is on, unchanged otherwise. Everything else of the restricted profile stays.
Usage: include "gpu-rdma-injector.securityContext" (dict "root" $ "context" .Values.podSecurityContext)
*/}}
{{- define "gpu-rdma-injector.securityContext" -}}
{{- $context := .context | default dict }}
{{- if include "gpu-rdma-injector.adaptSecurityContext" .root }}
{{- $context = omit $context "runAsUser" "runAsGroup" "fsGroup" }}
{{- end }}
{{- toYaml $context }}
{{- end }}

{{/* The serving Certificate (cert-manager mode); named in cert-manager.io/inject-ca-from. */}}
{{- define "gpu-rdma-injector.servingCertificateName" -}}
{{- printf "%s-tls" (include "gpu-rdma-injector.fullname" .) }}
{{- end }}

{{/* Name of the single webhook inside the MutatingWebhookConfiguration. */}}
{{- define "gpu-rdma-injector.webhookName" -}}
pods.gpu-rdma-injector.io
{{- end }}

{{/* Port the container listens on (the CLI's --port); the Service forwards to it. */}}
{{- define "gpu-rdma-injector.containerPort" -}}
8443
{{- end }}

{{/* Directory of the policy ConfigMap mount; --config points at policy.yaml inside it. */}}
{{- define "gpu-rdma-injector.configDir" -}}
/etc/gpu-rdma-injector/policy
{{- end }}

{{/* Directory of the TLS Secret mount in every mode but self-signed. */}}
{{- define "gpu-rdma-injector.tlsDir" -}}
/etc/gpu-rdma-injector/tls
{{- end }}

{{/* privateKey of the cert-manager Certificates; the argument is .Values.certificates.certManager.privateKey. */}}
{{- define "gpu-rdma-injector.privateKey" -}}
privateKey:
  algorithm: {{ .algorithm }}
  {{- if ne .algorithm "Ed25519" }}
  size: {{ .size }}
  {{- end }}
  # A new key on every renewal.
  rotationPolicy: Always
{{- end }}

{{/*
Fails the render with one clear sentence when values that the schema cannot check together are
inconsistent. Included from the templates that depend on them.
*/}}
{{/*
The fewest replicas the webhook runs with: the autoscaler's minimum when it is on, else
replicaCount.
*/}}
{{- define "gpu-rdma-injector.fewestReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ int .Values.autoscaling.minReplicas }}{{ else }}{{ int .Values.replicaCount }}{{ end }}
{{- end }}

{{/*
Refuse an autoscaler whose bounds are reversed or that has no CPU request to aim at, and a
PodDisruptionBudget that would block every eviction with the fewest replicas (a node drain would
hang on it).
*/}}
{{- define "gpu-rdma-injector.validateScaling" -}}
{{- $fewest := int (include "gpu-rdma-injector.fewestReplicas" .) }}
{{- $from := ternary "autoscaling.minReplicas" "replicaCount" .Values.autoscaling.enabled }}
{{- if .Values.autoscaling.enabled }}
{{- if lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas) }}
{{- fail (printf "autoscaling.maxReplicas (%d) is below autoscaling.minReplicas (%d); raise maxReplicas or lower minReplicas." (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- end }}
{{- if not ((.Values.resources).requests).cpu }}
{{- fail "autoscaling.enabled needs resources.requests.cpu: the autoscaler aims at a share of the CPU request." }}
{{- end }}
{{- end }}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if and $pdb.enabled (gt $fewest 1) }}
{{- $max := toString $pdb.maxUnavailable }}
{{- if ne $max "" }}
{{- if or (eq $max "0") (eq $max "0%") }}
{{- fail (printf "podDisruptionBudget.maxUnavailable %s blocks every eviction (node drains hang); use 1, or leave it empty for minAvailable." $max) }}
{{- end }}
{{- else }}
{{- $min := toString $pdb.minAvailable }}
{{- $needed := 0 }}
{{- if hasSuffix "%" $min }}
{{- $percent := int (trimSuffix "%" $min) }}
{{- $needed = div (add (mul $percent $fewest) 99) 100 }}
{{- else }}
{{- $needed = int $min }}
{{- end }}
{{- if ge (int $needed) $fewest }}
{{- fail (printf "podDisruptionBudget.minAvailable %s keeps all %d replicas (%s) and so blocks every eviction (node drains hang); keep fewer than %d, or raise %s." $min $fewest $from $fewest $from) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "gpu-rdma-injector.validateValues" -}}
{{- include "gpu-rdma-injector.validateScaling" . }}
{{- if eq .Values.certificates.mode "secret" }}
{{- if not .Values.certificates.secret.name }}
{{- fail "certificates.secret.name is required when certificates.mode is \"secret\": name an existing kubernetes.io/tls Secret in the release namespace." }}
{{- end }}
{{- if not .Values.certificates.secret.caBundle }}
{{- fail "certificates.secret.caBundle is required when certificates.mode is \"secret\": set it to the base64-encoded PEM of the CA that signed the Secret's tls.crt, e.g. --set certificates.secret.caBundle=$(base64 -w0 ca.crt)." }}
{{- end }}
{{- if not (hasPrefix "-----BEGIN CERTIFICATE-----" (b64dec .Values.certificates.secret.caBundle | trim)) }}
{{- fail "certificates.secret.caBundle must be base64-encoded PEM starting with -----BEGIN CERTIFICATE-----; encode the CA file with base64 -w0 ca.crt." }}
{{- end }}
{{- end }}
{{- end }}
