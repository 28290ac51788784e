"""Pulumi dynamic resources standing in for provider plugins that cannot be built here
(docker, random, tls: tools/README.md says why)."""
