package acl

import (
	"strings"
	"time"

	"github.com/stead-io/stead/api"
)

// Authenticate returns the token an Authorization header carries, as
// lookup finds it by ID in the cluster's state. A request without the
// header gets a nil token and an allowing decision: whether it needs one
// is for Authorize to say. A malformed, unknown, mismatched or revoked
// token is refused (Unauthenticated); the secret is compared in constant
// time.
func Authenticate(header string, lookup func(id string) (*api.Token, bool)) (*api.Token, Decision) {
	if header == "" {
		return nil, allow
	}
	secret, ok := strings.CutPrefix(header, "Bearer ")
	if !ok {
		return nil, deny(Unauthenticated, "the Authorization header is not \"Bearer TOKEN\"")
	}
	id, ok := SecretID(strings.TrimSpace(secret))
	if !ok {
		return nil, deny(Unauthenticated, "the token is malformed: a token is the secret 'stead acl bootstrap' or 'stead acl token create' printed")
	}
	tok, found := lookup(id)
	hash := ""
	if found {
		hash = tok.Spec.SecretHash
	}
	// Compared even for an unknown ID, so that both take as long.
	if !SecretMatches(hash, strings.TrimSpace(secret)) || !found {
		return nil, deny(Unauthenticated, "the token is not known to this cluster")
	}
	if tok.Spec.Revoked != nil {
		return nil, deny(Unauthenticated, "token %s was revoked at %s", tok.Name, tok.Spec.Revoked.UTC().Format(time.RFC3339))
	}
	return tok, allow
}
