"""`painchain-connector --demo`: the connector at work on an embedded cluster.

controlplane  etcd + kube-apiserver on loopback (also the test suite's control plane)
kube          a raw-JSON client of that apiserver
standin       plays the controllers' and the kubelet's part through the API
story         the scripted story and its expected PainChain events
console       how events and the summary are shown
entry         the command: start everything, play the story, stop everything

Importing this package does nothing: the CLI imports `entry` only for `--demo`.
"""
