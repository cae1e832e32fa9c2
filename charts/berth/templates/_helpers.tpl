{{/* The chart's name, or nameOverride. */}}
{{- define "berth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of every object: fullnameOverride, else <release>-<name> (the release name alone
when it holds the chart's name already). */}}
{{- define "berth.fullname" -}}
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

{{- define "berth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "berth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "berth.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "berth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Where the pod mounts each file the agent reads. */}}
{{- define "berth.configPath" -}}/etc/berth/agent.yaml{{- end }}
{{- define "berth.manifestsPath" -}}/etc/berth/manifests.d{{- end }}
{{- define "berth.gitSecretPath" -}}/etc/berth/git{{- end }}

{{/* The name of the ConfigMap of manifests: an existing one, or the chart's. */}}
{{- define "berth.manifestsConfigMap" -}}
{{- .Values.manifests.configMap.name | default (printf "%s-manifests" (include "berth.fullname" .)) }}
{{- end }}

{{/* The git secret's keys the chart mounts: config key → (secret key, file name). */}}
{{- define "berth.gitFiles" -}}
{{- $s := .Values.manifests.git.secret -}}
{{- $files := dict -}}
{{- if $s.passwordKey }}{{ $_ := set $files "passwordFile" (list $s.passwordKey "password") }}{{ end -}}
{{- if $s.tokenKey }}{{ $_ := set $files "tokenFile" (list $s.tokenKey "token") }}{{ end -}}
{{- if $s.sshKeyKey }}{{ $_ := set $files "sshKeyFile" (list $s.sshKeyKey "ssh-key") }}{{ end -}}
{{- if $s.knownHostsKey }}{{ $_ := set $files "knownHostsFile" (list $s.knownHostsKey "known_hosts") }}{{ end -}}
{{- if $s.caKey }}{{ $_ := set $files "caFile" (list $s.caKey "ca.crt") }}{{ end -}}
{{- if $s.allowedSignersKey }}{{ $_ := set $files "allowedSigners" (list $s.allowedSignersKey "allowed_signers") }}{{ end -}}
{{- toJson $files -}}
{{- end }}

{{/* agent.yaml: the keys of .Values.config, and those the chart sets itself. */}}
{{- define "berth.agentConfig" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%d" (int .Values.port)) -}}
{{- $_ := set $cfg "stateDir" .Values.hostPaths.stateDir -}}
{{- $_ := set $cfg "runDir" .Values.hostPaths.runDir -}}
{{- $_ := set $cfg "apiTokenFile" (printf "%s/%s" (include "berth.apiTokenPath" .) .Values.apiToken.secret.key) -}}
{{- if eq .Values.manifests.from "git" -}}
{{- $g := .Values.manifests.git -}}
{{- $git := dict "url" (required "manifests.git.url is required when manifests.from is git" $g.url) "ref" $g.ref -}}
{{- if $g.paths }}{{ $_ := set $git "paths" $g.paths }}{{ end -}}
{{- if $g.interval }}{{ $_ := set $git "interval" $g.interval }}{{ end -}}
{{- if $g.timeout }}{{ $_ := set $git "timeout" $g.timeout }}{{ end -}}
{{- if $g.username }}{{ $_ := set $git "username" $g.username }}{{ end -}}
{{- range $key, $file := include "berth.gitFiles" . | fromJson -}}
{{- $path := printf "%s/%s" (include "berth.gitSecretPath" $) (index $file 1) -}}
{{- if eq $key "allowedSigners" -}}
{{- $_ := set $git "verify" (dict "allowedSigners" $path) -}}
{{- else -}}
{{- $_ := set $git $key $path -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "source" (dict "git" $git) -}}
{{- else -}}
{{- $_ := set $cfg "manifests" (include "berth.manifestsPath" .) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end }}

{{/* Where the API token Secret is mounted. */}}
{{- define "berth.apiTokenPath" -}}
/etc/berth/api
{{- end }}

{{/* The Secret holding the API token: the user's, or the one the chart makes. */}}
{{- define "berth.apiTokenSecret" -}}
{{- .Values.apiToken.secret.name | default (printf "%s-api-token" (include "berth.fullname" .)) -}}
{{- end }}
