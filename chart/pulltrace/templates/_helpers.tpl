{{/*
Names. Every object is "<fullname>-<component>"; the longest suffix is "-dashboard" (10), so
the base is cut to 53 characters and every name stays a valid DNS-1035 label (63 characters,
starts with a letter): release names may start with a digit or contain dots, Service names may not.
*/}}
{{- define "pulltrace.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 53 | trimSuffix "-" -}}
{{- end -}}

{{- define "pulltrace.fullname" -}}
{{- $name := include "pulltrace.name" . -}}
{{- $full := "" -}}
{{- if .Values.fullnameOverride -}}
{{- $full = .Values.fullnameOverride -}}
{{- else if contains $name .Release.Name -}}
{{- $full = .Release.Name -}}
{{- else -}}
{{- $full = printf "%s-%s" .Release.Name $name -}}
{{- end -}}
{{- $full = regexReplaceAll "[^a-z0-9-]" (lower $full) "-" -}}
{{- if not (regexMatch "^[a-z]" $full) -}}
{{- $full = printf "%s-%s" $name $full -}}
{{- end -}}
{{- $full | trunc 53 | trimSuffix "-" -}}
{{- end -}}

{{/* Cluster-scoped objects also carry the namespace: one release name in two namespaces. */}}
{{- define "pulltrace.clusterName" -}}
{{- printf "%s-%s-server" .Release.Namespace (include "pulltrace.fullname" .) -}}
{{- end -}}

{{- define "pulltrace.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object; pass (dict "root" $ "component" "server") for a component's. */}}
{{- define "pulltrace.labels" -}}
{{- $root := .root | default . -}}
helm.sh/chart: {{ include "pulltrace.chart" $root }}
app.kubernetes.io/name: {{ include "pulltrace.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: pulltrace
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{- define "pulltrace.selector" -}}
app.kubernetes.io/name: {{ include "pulltrace.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "pulltrace.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* Kubernetes runs the daemons on Linux nodes only; the user's selector is merged in. */}}
{{- define "pulltrace.nodeSelector" -}}
{{- toYaml (merge (dict) . (dict "kubernetes.io/os" "linux")) -}}
{{- end -}}

{{/*
The agents' bearer token. One value per render, shared by the Secret and the pods' checksum:
token.value; else the token of the chart's Secret already in the cluster (lookup: an upgrade
of a release installed by a chart that generated it). The chart never invents one: a render
cannot keep what it invented (`helm template`, which GitOps tools run, has no cluster to read
it back from), so a random token would change, and restart every pod, at each render.
*/}}
{{- define "pulltrace.tokenSecret" -}}
{{- .Values.token.existingSecret | default (printf "%s-token" (include "pulltrace.fullname" .)) -}}
{{- end -}}

{{- define "pulltrace.tokenSecretKey" -}}
{{- if .Values.token.existingSecret -}}{{ .Values.token.existingSecretKey }}{{- else -}}token{{- end -}}
{{- end -}}

{{- define "pulltrace.tokenData" -}}
{{- if .Values.token.value -}}
{{- .Values.token.value | b64enc -}}
{{- else -}}
{{- $old := lookup "v1" "Secret" .Release.Namespace (include "pulltrace.tokenSecret" .) -}}
{{- if and $old $old.data (index $old.data "token") -}}
{{- index $old.data "token" -}}
{{- else -}}
{{- fail "agentAuth: token needs token.value or token.existingSecret (the chart does not generate the agents' token: a generated one would change at every render). Set one, e.g. --set-string token.value=\"$(head -c 32 /dev/urandom | base64)\", or create a Secret that holds it and set token.existingSecret (and token.existingSecretKey; see docs/upgrade.md, \"The token and GitOps\")" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
A checksum of the token on both pod templates: when the token changes, server and agents roll
together instead of answering each other with 401. For an existing Secret it is known only when
the chart can look it up.
*/}}
{{- define "pulltrace.tokenChecksum" -}}
{{- if ne .Values.agentAuth "token" -}}
{{- else if .Values.token.existingSecret -}}
{{- $s := lookup "v1" "Secret" .Release.Namespace .Values.token.existingSecret -}}
{{- if and $s $s.data (index $s.data .Values.token.existingSecretKey) -}}
{{- index $s.data .Values.token.existingSecretKey | sha256sum -}}
{{- end -}}
{{- else -}}
{{- include "pulltrace.tokenData" . | sha256sum -}}
{{- end -}}
{{- end -}}

{{/* Where the agent's projected service-account token is mounted (agentAuth: kubernetes). */}}
{{- define "pulltrace.agentTokenDir" -}}
/var/run/secrets/pulltrace
{{- end -}}

{{/* Where agents report: the headless Service, whose name resolves to every server replica,
on the report port. */}}
{{- define "pulltrace.serverUrl" -}}
{{ ternary "https" "http" .Values.tls.enabled }}://{{ include "pulltrace.fullname" . }}-replicas.{{ .Release.Namespace }}.svc:{{ .Values.server.reportPort }}
{{- end -}}

{{/* The Secret with the server's tls.crt and tls.key. */}}
{{- define "pulltrace.tlsSecret" -}}
{{- if .Values.tls.secretName -}}
{{ .Values.tls.secretName }}
{{- else if .Values.tls.certManager.issuerRef.name -}}
{{ include "pulltrace.fullname" . }}-server-tls
{{- else -}}
{{ fail "tls.enabled needs tls.secretName or tls.certManager.issuerRef" }}
{{- end -}}
{{- end -}}

{{/* The volume with the CA that clients of the server (agents, the test pod) verify it
with, as ca.crt: only that key is projected. */}}
{{- define "pulltrace.serverCAVolume" -}}
- name: server-ca
  {{- $items := list (dict "key" .Values.tls.agentCA.key "path" "ca.crt") }}
  {{- if .Values.tls.agentCA.secret }}
  secret: {secretName: {{ .Values.tls.agentCA.secret }}, items: {{ toJson $items }}}
  {{- else }}
  secret: {secretName: {{ include "pulltrace.tlsSecret" . }}, items: [{"key": "ca.crt", "path": "ca.crt"}]}
  {{- end }}
{{- end -}}

{{/* containerd's socket as the agent sees it: the host directory is mounted at /run/containerd. */}}
{{- define "pulltrace.agentSocket" -}}
/run/containerd/{{ base .Values.agent.containerdSocket }}
{{- end -}}
