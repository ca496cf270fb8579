{{/* The release's full name, at most 52 characters so that "-<shard><replica>" suffixes fit in 63. */}}
{{- define "dydx-exporter.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "dydx-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dydx-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dydx-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dydx-exporter.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "dydx-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dydx-exporter
{{- end -}}

{{- define "dydx-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "dydx-exporter.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding web.yml: the user's, or the chart's. */}}
{{- define "dydx-exporter.webConfigSecret" -}}
{{- default (printf "%s-web-config" (include "dydx-exporter.fullname" .)) .Values.webConfig.existingSecret -}}
{{- end -}}

{{/* HTTP or HTTPS for probes and the ServiceMonitor. */}}
{{- define "dydx-exporter.scheme" -}}
{{- if .Values.webConfig.scheme -}}
{{- .Values.webConfig.scheme | upper -}}
{{- else if and .Values.webConfig.enabled (not .Values.webConfig.existingSecret) (hasKey .Values.webConfig.config "tls_server_config") -}}
HTTPS
{{- else -}}
HTTP
{{- end -}}
{{- end -}}

{{/* The exporter's --config.file: the `config` values without nulls. */}}
{{- define "dydx-exporter.configFile" -}}
{{- $out := dict -}}
{{- range $flag, $value := .Values.config -}}
{{- if not (kindIs "invalid" $value) -}}
{{- $_ := set $out $flag $value -}}
{{- end -}}
{{- end -}}
{{- if $out -}}
{{- toYaml $out -}}
{{- else -}}
{}
{{- end -}}
{{- end -}}

{{/* The telemetry path, for the ServiceMonitor. */}}
{{- define "dydx-exporter.telemetryPath" -}}
{{- $path := index .Values.config "web.telemetry-path" -}}
{{- default "/metrics" $path -}}
{{- end -}}
