{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "streamcl.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name: the release name, plus the chart name unless it already holds it. */}}
{{- define "streamcl.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "streamcl.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: stable for the life of the release. */}}
{{- define "streamcl.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streamcl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of the learner pod (the StatefulSet) and of the serving replicas. */}}
{{- define "streamcl.learnerSelectorLabels" -}}
{{ include "streamcl.selectorLabels" . }}
app.kubernetes.io/component: learner
{{- end -}}

{{- define "streamcl.servingSelectorLabels" -}}
{{ include "streamcl.selectorLabels" . }}
app.kubernetes.io/component: serving
{{- end -}}

{{/* Standard labels of the serving replicas' objects. */}}
{{- define "streamcl.servingLabels" -}}
{{ include "streamcl.labels" . | replace "app.kubernetes.io/component: learner" "app.kubernetes.io/component: serving" }}
{{- end -}}

{{/* The model store's URL in models.store. */}}
{{- define "streamcl.storeURL" -}}
{{- if eq .Values.modelStore.type "s3" -}}
{{- printf "s3://%s/%s" .Values.modelStore.s3.bucket (trimPrefix "/" .Values.modelStore.s3.prefix) -}}
{{- else -}}
{{- .Values.modelStore.volume.mountPath -}}
{{- end -}}
{{- end -}}

{{- define "streamcl.modelsClaimName" -}}
{{- default (printf "%s-models" (include "streamcl.fullname" .) | trunc 63 | trimSuffix "-") .Values.modelStore.volume.existingClaim -}}
{{- end -}}

{{/* Environment of both roles for the model store's credentials. */}}
{{- define "streamcl.modelStoreEnv" -}}
{{- if and .Values.serving.enabled (eq .Values.modelStore.type "s3") .Values.modelStore.s3.existingSecret }}
- name: STREAMCL_MODELS__S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.modelStore.s3.existingSecret }}
      key: {{ .Values.modelStore.s3.accessKeyIdKey }}
- name: STREAMCL_MODELS__S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.modelStore.s3.existingSecret }}
      key: {{ .Values.modelStore.s3.secretAccessKeyKey }}
{{- end }}
{{- end -}}

{{/* Standard labels of every object (component: learner; serving objects replace it). */}}
{{- define "streamcl.labels" -}}
{{ include "streamcl.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: learner
app.kubernetes.io/part-of: streamcl
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "streamcl.image" -}}
{{- $registry := default .Values.image.registry .Values.global.imageRegistry -}}
{{- $repo := ternary (printf "%s/%s" $registry .Values.image.repository) .Values.image.repository (ne $registry "") -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{- define "streamcl.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "streamcl.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "streamcl.configmapName" -}}
{{- default (include "streamcl.fullname" .) .Values.existingConfigmap -}}
{{- end -}}

{{/*
Learner replicas above 1: per-key models on a shared store, or hot standbys on a shared folder.
*/}}
{{- define "streamcl.checkReplicas" -}}
{{- if gt (int .Values.replicaCount) 1 -}}
{{- $learner := .Values.config.learner | default dict -}}
{{- $checkpoint := .Values.config.checkpoint | default dict -}}
{{- if eq (toString $learner.partitioning) "key" -}}
{{- if not $checkpoint.store -}}
{{- fail "replicaCount > 1 with config.learner.partitioning key: set config.checkpoint.store (shared storage, e.g. s3://bucket/prefix) so partitions' models can move between pods" -}}
{{- end -}}
{{- else if $learner.standby -}}
{{- if not .Values.persistence.existingClaim -}}
{{- fail "replicaCount > 1 with config.learner.standby: set persistence.existingClaim to a ReadWriteMany volume shared by the learners (the standby restores the active's checkpoint)" -}}
{{- end -}}
{{- else -}}
{{- fail "replicaCount > 1 needs config.learner.partitioning: key (per-key models) or config.learner.standby: true (hot standby); two learners of one global model would diverge" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Pod anti-affinity of the learner pods (podAntiAffinityPreset soft or hard).
*/}}
{{- define "streamcl.podAntiAffinity" -}}
podAntiAffinity:
  {{- if eq .Values.podAntiAffinityPreset "hard" }}
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "streamcl.learnerSelectorLabels" . | nindent 10 }}
  {{- else }}
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "streamcl.learnerSelectorLabels" . | nindent 12 }}
  {{- end }}
{{- end -}}
