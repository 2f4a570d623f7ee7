{{/* Labels of every object: config/'s app.kubernetes.io/name plus Helm's. */}}
{{- define "sealmesh.labels" -}}
app.kubernetes.io/name: sealmesh
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "sealmesh.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The agent's service account as the API server names its user (the admission policies match it). */}}
{{- define "sealmesh.agentUser" -}}
system:serviceaccount:{{ .Release.Namespace }}:sealmesh-agent
{{- end -}}

{{- define "sealmesh.keyNamespace" -}}
{{- if eq .Values.keyNamespace.name .Release.Namespace -}}
{{- fail "keyNamespace.name must differ from the release namespace: agents may read every Secret in it" -}}
{{- end -}}
{{ .Values.keyNamespace.name }}
{{- end -}}
