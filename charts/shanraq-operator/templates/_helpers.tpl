{{/*
Names, labels and RBAC rules shared by the templates.
*/}}

{{- define "shanraq-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, at most 63 characters (a DNS label).
*/}}
{{- define "shanraq-operator.fullname" -}}
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

{{- define "shanraq-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "shanraq-operator.labels" -}}
helm.sh/chart: {{ include "shanraq-operator.chart" . }}
{{ include "shanraq-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: shanraq
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "shanraq-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shanraq-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "shanraq-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "shanraq-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "shanraq-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
What the operator reads and writes in the namespaces it manages. Used by the ClusterRole (all
namespaces) or by one Role per watched namespace. Secrets are never patched or deleted: generated
passwords are created once and never regenerated. Keep in sync with deploy/operator/rbac.yaml
(a test compares them).
*/}}
{{- define "shanraq-operator.managerRules" -}}
- apiGroups: ["shanraq.org"]
  resources: ["shanraqclusters"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["shanraq.org"]
  resources: ["shanraqclusters/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["shanraq.org"]
  resources: ["shanraqclusters/finalizers"]
  verbs: ["update"]
- apiGroups: ["shanraq.org"]
  resources: ["shanraqbackups"]
  verbs: ["get", "list", "watch", "create"]
- apiGroups: ["shanraq.org"]
  resources: ["shanraqbackups/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["apps"]
  resources: ["statefulsets", "deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# One-shot Jobs: forming a Redis Cluster, creating Kafka topics.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "patch", "delete"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["podmonitors", "prometheusrules"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}

{{/*
Cluster-scoped reads: whether the Prometheus Operator's CRDs exist decides if PodMonitors and
PrometheusRules are rendered.
*/}}
{{- define "shanraq-operator.crdReaderRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/*
The leader-election Lease, in the release namespace only.
*/}}
{{- define "shanraq-operator.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update", "patch"]
{{- end }}
