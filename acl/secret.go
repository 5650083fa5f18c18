package acl

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// A token's secret is "<id>.<key>": id names the token's record (16 hex
// digits, or "bootstrap" for the token `stead acl bootstrap` makes; not
// secret) and key is 32 random bytes in hex. The cluster keeps only the
// SHA-256 of the whole secret.
const (
	idBytes  = 8
	keyBytes = 32
)

// BootstrapID names the token `stead acl bootstrap` makes. Its record
// stays after it is revoked, so that bootstrap happens once.
const BootstrapID = "bootstrap"

// NewSecret makes a new token ID and its secret from rand.
func NewSecret(rand io.Reader) (id, secret string, err error) {
	b := make([]byte, idBytes)
	if _, err := io.ReadFull(rand, b); err != nil {
		return "", "", fmt.Errorf("make token ID: %w", err)
	}
	id = hex.EncodeToString(b)
	secret, err = NewSecretFor(rand, id)
	return id, secret, err
}

// NewSecretFor makes a secret for the token id.
func NewSecretFor(rand io.Reader, id string) (string, error) {
	b := make([]byte, keyBytes)
	if _, err := io.ReadFull(rand, b); err != nil {
		return "", fmt.Errorf("make token secret: %w", err)
	}
	return id + "." + hex.EncodeToString(b), nil
}

// SecretID returns the token ID a secret names, or false when the secret
// does not have the shape of one.
func SecretID(secret string) (string, bool) {
	id, key, ok := strings.Cut(secret, ".")
	if !ok || !(id == BootstrapID || len(id) == 2*idBytes && isHex(id)) || len(key) != 2*keyBytes || !isHex(key) {
		return "", false
	}
	return id, true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// HashSecret returns what the cluster stores of a secret: its SHA-256 in
// hex.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// SecretMatches reports whether secret hashes to hash, comparing in
// constant time. A malformed hash matches nothing.
func SecretMatches(hash, secret string) bool {
	want, err := hex.DecodeString(hash)
	if err != nil || len(want) != sha256.Size {
		// Compare anyway, so that a bad record takes as long as a good one.
		want = make([]byte, sha256.Size)
		got := sha256.Sum256([]byte(secret))
		subtle.ConstantTimeCompare(want, got[:])
		return false
	}
	got := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(want, got[:]) == 1
}
