{{/*
Names follow Helm's conventions: <release>-eventpipe, or the release name
alone when it already says eventpipe.
*/}}
{{- define "eventpipe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "eventpipe.fullname" -}}
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

{{/* The object name of one component: <fullname>-<component>. */}}
{{- define "eventpipe.componentName" -}}
{{- printf "%s-%s" (include "eventpipe.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "eventpipe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "eventpipe.labels" -}}
helm.sh/chart: {{ include "eventpipe.chart" . }}
app.kubernetes.io/name: {{ include "eventpipe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: eventpipe
{{- end }}

{{/* Labels of one component; dict root, component. */}}
{{- define "eventpipe.componentLabels" -}}
{{ include "eventpipe.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector labels of one component; dict root, component. */}}
{{- define "eventpipe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eventpipe.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The long-running services: component name (the binary, the Prometheus job
name, the image) to its values key.
*/}}
{{- define "eventpipe.services" -}}
gateway: gateway
fb-collector: fbCollector
ttk-collector: ttkCollector
reporter: reporter
{{- end }}

{{/* The image of one binary; dict root, component. */}}
{{- define "eventpipe.image" -}}
{{- $i := .root.Values.image }}
{{- $name := printf "%s%s:%s" $i.prefix .component (default .root.Chart.AppVersion $i.tag) }}
{{- if $i.registry }}
{{- printf "%s/%s" (trimSuffix "/" $i.registry) $name }}
{{- else }}
{{- $name }}
{{- end }}
{{- end }}

{{/*
The subcharts' full names, computed as they compute them (both use Helm's
conventional fullname), so Service and Secret names here match theirs.
*/}}
{{- define "eventpipe.subchartFullname" -}}
{{- $v := .values }}
{{- if $v.fullnameOverride }}
{{- $v.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .name $v.nameOverride }}
{{- if contains $name .root.Release.Name }}
{{- .root.Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .root.Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "eventpipe.natsFullname" -}}
{{- include "eventpipe.subchartFullname" (dict "root" . "name" "nats" "values" .Values.nats) }}
{{- end }}

{{- define "eventpipe.postgresqlFullname" -}}
{{- include "eventpipe.subchartFullname" (dict "root" . "name" "postgresql" "values" .Values.postgresql) }}
{{- end }}

{{/* NATS_URL of every service. */}}
{{- define "eventpipe.natsURL" -}}
{{- if .Values.nats.enabled }}
{{- printf "nats://%s.%s.svc:4222" (include "eventpipe.natsFullname" .) .Release.Namespace }}
{{- else }}
{{- required "externalNats.url is required when nats.enabled is false" .Values.externalNats.url }}
{{- end }}
{{- end }}

{{/*
KEDA's natsServerMonitoringEndpoint: host:port of NATS's monitoring on the
headless service, so in a cluster KEDA can ask the consumer's leader by
pod name (<pod>.<headless service>).
*/}}
{{- define "eventpipe.natsMonitoringEndpoint" -}}
{{- if .Values.nats.enabled }}
{{- printf "%s-headless.%s.svc.cluster.local:%v" (include "eventpipe.natsFullname" .) .Release.Namespace .Values.nats.config.monitor.port }}
{{- else }}
{{- required "externalNats.monitoringEndpoint is required when nats.enabled is false and keda.enabled is true" .Values.externalNats.monitoringEndpoint }}
{{- end }}
{{- end }}

{{/* The Secret and key holding DATABASE_URL. */}}
{{- define "eventpipe.databaseSecretName" -}}
{{- if .Values.postgresql.enabled }}
{{- printf "%s-app" (include "eventpipe.postgresqlFullname" .) }}
{{- else if .Values.externalDatabase.existingSecret }}
{{- .Values.externalDatabase.existingSecret }}
{{- else if .Values.externalDatabase.url }}
{{- include "eventpipe.componentName" (dict "root" . "component" "database") }}
{{- else }}
{{- fail "set externalDatabase.existingSecret or externalDatabase.url when postgresql.enabled is false" }}
{{- end }}
{{- end }}

{{- define "eventpipe.databaseSecretKey" -}}
{{- if .Values.postgresql.enabled }}uri{{ else if .Values.externalDatabase.existingSecret }}{{ .Values.externalDatabase.secretKey }}{{ else }}DATABASE_URL{{ end }}
{{- end }}

{{- define "eventpipe.databaseEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "eventpipe.databaseSecretName" . }}
      key: {{ include "eventpipe.databaseSecretKey" . }}
{{- end }}

{{/*
DATABASE_URL of a service that reads or writes events: root and component
("reporter", or a collector). Its own Secret when externalDatabase names
one (a role with only the rights it needs), else the owner's URL.
*/}}
{{/*
With the bundled database, the login role of postgresql.cluster.roles in
group (eventpipe_reader or eventpipe_writer): the name of its password
Secret, or nothing when the list has no such role (the service then uses
the owner's URL).
*/}}
{{- define "eventpipe.bundledLoginSecret" -}}
{{- if .root.Values.postgresql.enabled }}
{{- $found := "" }}
{{- range (dig "cluster" "roles" list .root.Values.postgresql) }}
{{- if and (not $found) .login (ne (.ensure | default "present") "absent") (has $.group (.inRoles | default list)) (dig "passwordSecret" "name" "" .) }}
{{- $found = .passwordSecret.name }}
{{- end }}
{{- end }}
{{- $found }}
{{- end }}
{{- end }}

{{/*
true when postgresql.cluster.roles declares both group roles: CloudNativePG
creates them, and migrate waits for them to grant their rights.
*/}}
{{- define "eventpipe.bundledGroups" -}}
{{- $names := list }}
{{- range (dig "cluster" "roles" list .Values.postgresql) }}
{{- if ne (.ensure | default "present") "absent" }}
{{- $names = append $names .name }}
{{- end }}
{{- end }}
{{- if and .Values.postgresql.enabled (has "eventpipe_reader" $names) (has "eventpipe_writer" $names) }}true{{ end }}
{{- end }}

{{- define "eventpipe.serviceDatabaseEnv" -}}
{{- $db := .root.Values.externalDatabase }}
{{- $reporter := eq .component "reporter" }}
{{- $secret := ternary $db.reporterSecret $db.collectorSecret $reporter }}
{{- $login := include "eventpipe.bundledLoginSecret" (dict "root" .root "group" (ternary "eventpipe_reader" "eventpipe_writer" $reporter)) }}
{{- if $login }}
{{- /*
The bundled database's service (<cluster>-rw), logged in as the role
CloudNativePG created from postgresql.cluster.roles; pgx takes the user
and password from PGUSER and PGPASSWORD, so no password is spelt into a
URL.
*/}}
- name: DATABASE_URL
  value: {{ printf "postgresql://%s-rw.%s.svc:5432/%s" (include "eventpipe.postgresqlFullname" .root) .root.Release.Namespace (dig "cluster" "initdb" "database" "app" .root.Values.postgresql) | quote }}
- name: PGUSER
  valueFrom:
    secretKeyRef:
      name: {{ $login }}
      key: username
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $login }}
      key: password
{{- else if and (not .root.Values.postgresql.enabled) $secret }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ ternary $db.reporterSecretKey $db.collectorSecretKey $reporter }}
{{- else }}
{{- include "eventpipe.databaseEnv" .root }}
{{- end }}
{{- end }}

{{/*
migrate's REPORTER_DATABASE_URL and COLLECTOR_DATABASE_URL: the services'
own URLs, whose login roles it makes (externalDatabase.manageRoles).
*/}}
{{- define "eventpipe.loginRolesEnv" -}}
{{- $db := .Values.externalDatabase }}
{{- if and (not .Values.postgresql.enabled) $db.manageRoles }}
{{- with $db.reporterSecret }}
- name: REPORTER_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $db.reporterSecretKey }}
{{- end }}
{{- with $db.collectorSecret }}
- name: COLLECTOR_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $db.collectorSecretKey }}
{{- end }}
{{- end }}
{{- end }}

{{/* Settings every service shares. */}}
{{- define "eventpipe.commonEnv" -}}
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- end }}

{{/* The EVENTS stream settings: the gateway owns them; collectors use them only to create a missing stream. */}}
{{- define "eventpipe.streamEnv" -}}
- name: STREAM_MAX_AGE
  value: {{ .Values.jetstream.maxAge | quote }}
- name: STREAM_MAX_BYTES
  value: {{ .Values.jetstream.maxBytes | quote }}
- name: STREAM_REPLICAS
  value: {{ .Values.jetstream.replicas | quote }}
- name: STREAM_DUPLICATE_WINDOW
  value: {{ .Values.jetstream.duplicateWindow | quote }}
{{- end }}

{{/* A map of extra settings as env entries, sorted by name. */}}
{{- define "eventpipe.extraEnv" -}}
{{- range $k := keys . | sortAlpha }}
- name: {{ $k }}
  value: {{ index $ $k | toString | quote }}
{{- end }}
{{- end }}

{{/* The pod's grace period: the drain budget, the preStop pause and a margin. */}}
{{- define "eventpipe.terminationGracePeriodSeconds" -}}
{{- add .Values.shutdownTimeoutSeconds .Values.preStopSeconds 10 }}
{{- end }}

{{/* Helm hook annotations of the migration Job, per database mode. */}}
{{- define "eventpipe.migrationHooks" -}}
{{- if .Values.postgresql.enabled -}}
post-install,post-upgrade
{{- else -}}
pre-install,pre-upgrade
{{- end }}
{{- end }}

{{/*
Checks across values that the schema cannot express; each failure names
the values at fault.
*/}}
{{- define "eventpipe.validate" -}}
{{- with .Values.gateway.autoscaling }}
{{- if and .enabled (gt (int .minReplicas) (int .maxReplicas)) }}
{{- fail (printf "gateway.autoscaling.minReplicas (%v) is above gateway.autoscaling.maxReplicas (%v)" .minReplicas .maxReplicas) }}
{{- end }}
{{- end }}
{{- range $key := list "fbCollector" "ttkCollector" }}
{{- with (index $.Values $key).keda }}
{{- if gt (int .minReplicaCount) (int .maxReplicaCount) }}
{{- fail (printf "%s.keda.minReplicaCount (%v) is above %s.keda.maxReplicaCount (%v)" $key .minReplicaCount $key .maxReplicaCount) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.nats.enabled (gt (int .Values.jetstream.replicas) 1) (not (dig "config" "cluster" "enabled" false .Values.nats)) }}
{{- fail (printf "jetstream.replicas is %v but nats.config.cluster.enabled is false: a single NATS server holds one replica" .Values.jetstream.replicas) }}
{{- end }}
{{- if and .Values.postgresql.enabled (or .Values.externalDatabase.existingSecret .Values.externalDatabase.url .Values.externalDatabase.reporterSecret .Values.externalDatabase.collectorSecret) }}
{{- fail "externalDatabase is set while postgresql.enabled is true: set postgresql.enabled=false to use the external database" }}
{{- end }}
{{- end }}
