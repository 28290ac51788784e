"""The type tokens the engine records for the dynamic resources of infra/providers: what
`infra render`, the policy pack and auditors see."""

PASSWORD = "pulumi-python:dynamic/random:Password"
CERTIFICATE = "pulumi-python:dynamic/tls:SelfSignedCertificate"
NETWORK = "pulumi-python:dynamic/docker:Network"
VOLUME = "pulumi-python:dynamic/docker:Volume"
IMAGE = "pulumi-python:dynamic/docker:Image"
CONTAINER = "pulumi-python:dynamic/docker:Container"
