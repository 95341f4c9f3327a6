{{/* Names and labels shared by every template. */}}

{{- define "billing.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "billing.labels" -}}
app.kubernetes.io/part-of: billing
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "billing.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The environment every container gets: the ConfigMap, the Secret, the database URL. */}}
{{- define "billing.envFrom" -}}
- configMapRef:
    name: {{ include "billing.fullname" . }}-env
- secretRef:
    name: {{ include "billing.fullname" . }}-env
{{- end -}}

{{- define "billing.databaseEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      {{- if .Values.database.existingSecret }}
      name: {{ .Values.database.existingSecret }}
      key: {{ .Values.database.existingSecretKey }}
      {{- else }}
      name: {{ include "billing.fullname" . }}-env
      key: DATABASE_URL
      {{- end }}
{{- end -}}
