// The Kubernetes API and manifest-directory sources (issue 4) live here.
