"""What the tests share: moto's server and its fault layers, DynamoDB table helpers, the
oracles, the crash harness, and the scenarios and CLI helpers several test modules use. Test
modules import from here, never from each other."""
