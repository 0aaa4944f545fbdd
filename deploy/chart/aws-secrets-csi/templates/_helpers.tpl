{{- define "aws-secrets-csi.name" -}}aws-secrets-csi{{- end -}}
{{- define "aws-secrets-csi.labels" -}}
app.kubernetes.io/name: {{ include "aws-secrets-csi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
{{- define "aws-secrets-csi.selector" -}}
app.kubernetes.io/name: {{ include "aws-secrets-csi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
