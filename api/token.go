package api

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// TokenRole says what an ACL token may do.
type TokenRole string

// The roles of ACL tokens (docs/security.md has the full rules).
const (
	// TokenManagement may do everything, including managing tokens.
	TokenManagement TokenRole = "management"
	// TokenReadOnly may read every object, but no token.
	TokenReadOnly TokenRole = "read-only"
	// TokenAgent belongs to the agent of one node (TokenSpec.Node): it
	// may register and renew that node, read what cluster DNS and
	// routes need, and report the status and the end of pods bound to
	// that node only.
	TokenAgent TokenRole = "agent"
)

// Valid reports whether r is one of the roles.
func (r TokenRole) Valid() bool {
	return r == TokenManagement || r == TokenReadOnly || r == TokenAgent
}

// Token is one ACL token as the cluster stores it: cluster-scoped, named
// by its accessor ID, which is not secret. The secret a client presents
// is never stored, only its SHA-256, and the API never serves that hash.
type Token struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              TokenSpec `json:"spec"`
}

// TokenSpec is what a token grants.
type TokenSpec struct {
	// Role says what the token may do.
	Role TokenRole `json:"role"`
	// Node is the node an agent token acts for; empty for other roles.
	Node string `json:"node,omitempty"`
	// Description is free text for people: who or what holds the token.
	Description string `json:"description,omitempty"`
	// SecretHash is the hex SHA-256 of the secret. Never served.
	SecretHash string `json:"secretHash,omitempty"`
	// Bootstrap marks the token `stead acl bootstrap` made. Its record
	// stays after it is revoked, so bootstrap happens once.
	Bootstrap bool `json:"bootstrap,omitempty"`
	// Revoked is when the token was revoked; a revoked token is refused.
	// Revoked tokens stay listed so that it is clear what happened.
	Revoked *metav1.Time `json:"revoked,omitempty"`
}

// DeepCopyObject implements runtime.Object.
func (t *Token) DeepCopyObject() runtime.Object {
	if t == nil {
		return nil
	}
	out := *t
	t.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	if t.Spec.Revoked != nil {
		r := *t.Spec.Revoked
		out.Spec.Revoked = &r
	}
	return &out
}

// TokenInfo is a token as the API shows it: never with its secret's hash.
type TokenInfo struct {
	// ID is the token's accessor ID, which names it in `stead acl token
	// revoke`.
	ID          string       `json:"id"`
	Role        TokenRole    `json:"role"`
	Node        string       `json:"node,omitempty"`
	Description string       `json:"description,omitempty"`
	Bootstrap   bool         `json:"bootstrap,omitempty"`
	Created     metav1.Time  `json:"created"`
	Revoked     *metav1.Time `json:"revoked,omitempty"`
}

// Info returns what the API may show of t.
func (t *Token) Info() TokenInfo {
	return TokenInfo{
		ID: t.Name, Role: t.Spec.Role, Node: t.Spec.Node, Description: t.Spec.Description,
		Bootstrap: t.Spec.Bootstrap, Created: t.CreationTimestamp, Revoked: t.Spec.Revoked,
	}
}

// TokenList is the answer of GET /v1/acl/tokens.
type TokenList struct {
	Items []TokenInfo `json:"items"`
}

// TokenRequest asks for a new token (POST /v1/acl/tokens).
type TokenRequest struct {
	Role        TokenRole `json:"role"`
	Node        string    `json:"node,omitempty"`
	Description string    `json:"description,omitempty"`
}

// NewToken answers a request that made a token: the only time its secret
// is shown.
type NewToken struct {
	TokenInfo `json:",inline"`
	// Secret is what a client sends as its bearer token.
	Secret string `json:"secret"`
}
