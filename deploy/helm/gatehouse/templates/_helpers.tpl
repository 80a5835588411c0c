{{/* The chart's name, or nameOverride. */}}
{{- define "gatehouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The name of every object: the release's, with the chart's name unless it already has it. */}}
{{- define "gatehouse.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "gatehouse.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "gatehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gatehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gatehouse.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gatehouse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "gatehouse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gatehouse.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "gatehouse.secretName" -}}
{{- default (include "gatehouse.fullname" .) .Values.secret.existingSecret -}}
{{- end -}}

{{/*
gatehouse.yaml: the user's `config` with the keys the chart owns set from the other values.
Secrets stay out of the ConfigMap: the file names environment variables, which the Deployment
fills from the Secret, and the gateway expands them when it loads the file.
*/}}
{{- define "gatehouse.config" -}}
{{- $c := deepCopy (.Values.config | default dict) -}}
{{- $_ := set $c "listen" (dict "host" "0.0.0.0" "port" (int .Values.ports.proxy)) -}}
{{- $_ := set $c "admin" (dict "host" "0.0.0.0" "port" (int .Values.ports.admin) "token" "${GATEHOUSE_ADMIN_TOKEN}") -}}
{{- $_ := set $c "workers" .Values.workers -}}
{{- $_ := set $c "configWatch" .Values.configWatch -}}
{{- $_ := set $c "shutdown" (dict "acceptGrace" (printf "%ds" (int .Values.shutdown.acceptGraceSeconds)) "drainTimeout" (printf "%ds" (int .Values.shutdown.drainTimeoutSeconds))) -}}
{{- if .Values.redis.enabled -}}
{{- $_ := set $c "redis" (merge (dict "url" "${GATEHOUSE_REDIS_URL}") ($c.redis | default dict)) -}}
{{- end -}}
{{- if .Values.database.enabled -}}
{{- $_ := set $c "database" (dict "url" "${GATEHOUSE_DATABASE_URL}") -}}
{{- else -}}
{{- $_ := set $c "database" (dict "file" "/var/lib/gatehouse/gatehouse.db") -}}
{{- end -}}
{{- if .Values.apiKeys.enabled -}}
{{- $auth := $c.auth | default dict -}}
{{- $_ := set $auth "apiKey" (merge (dict "secret" "${GATEHOUSE_API_KEY_SECRET}") ($auth.apiKey | default dict)) -}}
{{- $_ := set $c "auth" $auth -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{/* SIGTERM to exit: a preStop sleep, the accept grace, the drain, flushing logs and spans (5 s), 5 s of margin. */}}
{{- define "gatehouse.terminationGracePeriod" -}}
{{- $needed := add (int .Values.preStopSleepSeconds) (int .Values.shutdown.acceptGraceSeconds) (int .Values.shutdown.drainTimeoutSeconds) 10 -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- $needed -}}
{{- else if lt (int .Values.terminationGracePeriodSeconds) (int $needed) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be at least preStopSleepSeconds + shutdown.acceptGraceSeconds + shutdown.drainTimeoutSeconds + 10 (%d): the kubelet would kill requests still draining" (int .Values.terminationGracePeriodSeconds) (int $needed)) -}}
{{- else -}}
{{- int .Values.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}
