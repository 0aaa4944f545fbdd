{{- define "aws-secrets-csi.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{/* The name of the DaemonSet, its ServiceAccount and roles: fullnameOverride,
else the name (not prefixed by the release: one driver per cluster). */}}
{{- define "aws-secrets-csi.fullname" -}}
{{- .Values.fullnameOverride | default (include "aws-secrets-csi.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- define "aws-secrets-csi.labels" -}}
app.kubernetes.io/name: {{ include "aws-secrets-csi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}
{{- define "aws-secrets-csi.selector" -}}
app.kubernetes.io/name: {{ include "aws-secrets-csi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{/* repository:tag, or repository@digest when a digest is given. */}}
{{- define "aws-secrets-csi.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}
{{/* The ConfigMap where the controller records AWS changes for the nodes;
set only when the controller reads an events queue. */}}
{{- define "aws-secrets-csi.changes" -}}
{{- if and .Values.controller.enabled .Values.controller.eventsQueue -}}
{{ include "aws-secrets-csi.fullname" . }}-changes
{{- end -}}
{{- end -}}
