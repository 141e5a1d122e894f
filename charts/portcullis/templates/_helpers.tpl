{{/* Names and labels shared by every template. */}}

{{- define "portcullis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* `<release>-<chart>`, or the release name when it already contains the chart name. */}}
{{- define "portcullis.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "portcullis.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "portcullis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: portcullis
{{- end }}

{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The external authorizer's pods. access.portcullis.dev/role=authorizer is how the operator
finds them (in the release namespace only); component keeps them out of the operator's selector. */}}
{{- define "portcullis.authorizerSelectorLabels" -}}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: authorizer
access.portcullis.dev/role: authorizer
{{- end }}

{{- define "portcullis.authorizerLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "portcullis.authorizerSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: portcullis
{{- end }}

{{/* The authentication host's pods (authenticationHost.enabled). The operator recognises them as
sidecar pods by their container port `portcullis-adm` and pushes them the configuration of every
application whose selector matches them (authenticationHost.podLabels); these labels only tie the
Deployment, Service and PodDisruptionBudget to them. */}}
{{- define "portcullis.authHostSelectorLabels" -}}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: authentication-host
{{- end }}

{{- define "portcullis.authHostLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "portcullis.authHostSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: portcullis
{{- end }}

{{- define "portcullis.authHostNamespace" -}}
{{- default .Release.Namespace .Values.authenticationHost.namespace }}
{{- end }}

{{- define "portcullis.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-operator" (include "portcullis.fullname" .)) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference from {repository, tag, digest}: the digest wins, the tag defaults to appVersion. */}}
{{- define "portcullis.image" -}}
{{- $image := index . 0 }}{{- $root := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{- define "portcullis.webhookService" -}}{{ include "portcullis.fullname" . }}-webhook{{- end }}
{{- define "portcullis.webhookSecret" -}}{{ include "portcullis.fullname" . }}-webhook-tls{{- end }}
{{- define "portcullis.mutatingName" -}}{{ include "portcullis.fullname" . }}-inject{{- end }}
{{- define "portcullis.validatingName" -}}{{ include "portcullis.fullname" . }}-validate{{- end }}
{{/* The Lease leader election uses (fixed by the operator). */}}
{{- define "portcullis.leaseName" -}}portcullis-operator{{- end }}

{{/* Namespaces no webhook ever sees: kube-system, the release namespace (so the operator can
always start) and whatever the user adds. */}}
{{- define "portcullis.excludedNamespaces" -}}
{{- $ns := concat (list "kube-system" .Release.Namespace) .Values.webhook.excludeNamespaces | uniq }}
{{- toJson $ns }}
{{- end }}

{{/* cert-manager's CA injection annotation (cert-manager mode only). */}}
{{- define "portcullis.injectCA" -}}
{{- if .Values.webhook.certManager.enabled }}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "portcullis.webhookService" . }}
{{- end }}
{{- end }}

{{/* A webhook's clientConfig: the webhook Service, or webhook.urlOverride (development). */}}
{{- define "portcullis.clientConfig" -}}
{{- $root := index . 0 }}{{- $path := index . 1 }}
{{- if $root.Values.webhook.urlOverride }}
url: {{ printf "%s%s" (trimSuffix "/" $root.Values.webhook.urlOverride) $path | quote }}
{{- else }}
service:
  name: {{ include "portcullis.webhookService" $root }}
  namespace: {{ $root.Release.Namespace }}
  path: {{ $path }}
  port: 443
{{- end }}
{{- end }}

{{/* The OTEL variables of every Portcullis process that traces (operator, authorizer, authentication host), from
`tracing.*`. Included only when tracing.otlpEndpoint is set (an empty include under nindent
would leave a blank line in the rendered manifests). */}}
{{- define "portcullis.otelEnv" -}}
{{- with .Values.tracing }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .otlpEndpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .protocol | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .sampler | quote }}
{{- if .samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .samplerArg | quote }}
{{- end }}
{{- end }}
{{- end }}
