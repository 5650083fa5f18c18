// Package acl decides who may do what through Stead's HTTP API: the
// secrets of ACL tokens and the hashes the cluster keeps of them, the
// rules of each token role and of each certificate role, and a rate
// limiter per caller. It keeps no state of its own beyond the limiter's
// buckets and does no I/O: the API server hands it the request, the
// caller's token and certificate, and lookups into its state.
//
// The rules, which docs/security.md explains for operators:
//
//   - GET /v1/health and GET /v1/ready answer anyone; POST
//     /v1/acl/bootstrap too, once.
//   - With TLS, POST /v1/join needs a server certificate of the cluster,
//     whatever the token. A server certificate alone may also read what
//     servers ask each other while forming and joining a cluster
//     (GET /v1/join-info, /v1/operator/raft/configuration, /v1/status).
//   - With ACLs on, every other request needs a token that is known and
//     not revoked (401 otherwise), whose role allows it (403 otherwise):
//     management everything; read-only every GET but tokens and
//     snapshots of the state (which hold the tokens' records); agent,
//     for its node only, what the agent does (see AgentRule).
//   - A caller with an agent's certificate may act only with that node's
//     agent token.
package acl
