package agent

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/stead-io/stead/acl"
	"github.com/stead-io/stead/api"
)

// Limits of the token cache.
const (
	// tokenCacheTTL is how long an answer about a token is kept: a token
	// revoked while cached keeps working on this agent for up to this
	// long, and a refused one stays refused as long.
	tokenCacheTTL = 30 * time.Second
	// tokenCacheSize bounds the tokens kept; past it the expired ones go,
	// then arbitrary ones.
	tokenCacheSize = 1024
	// tokenCheckTimeout bounds one question to a server.
	tokenCheckTimeout = 10 * time.Second
	// tokenAskRate and tokenAskBurst bound the questions about tokens the
	// agent has no answer for that one source address may cause, so that
	// guessing tokens at the agent neither floods the servers nor goes
	// faster than at the servers.
	tokenAskRate  = 10
	tokenAskBurst = 20
)

// tokenChecker finds out what the token a caller of the agent's API
// presents is, by asking a server (GET /v1/acl/token/self with that
// token), and keeps each answer, known or refused, for a while, so that
// neither a busy user nor a stream of bad tokens sends a question to the
// servers per request. Answers that say nothing about the token (no
// server reached, rate limited) are not kept. Secrets are kept only as
// their SHA-256. It is safe for concurrent use.
type tokenChecker struct {
	servers *serverPool
	clock   Clock
	ttl     time.Duration
	size    int
	// asks limits the questions each source address causes.
	asks *acl.Limiter

	mu    sync.Mutex
	cache map[[sha256.Size]byte]tokenAnswer
}

// tokenAnswer is what a server said about a token: its info, or why it
// was refused.
type tokenAnswer struct {
	info    *api.TokenInfo
	refused error
	expires time.Time
}

func newTokenChecker(servers *serverPool, clock Clock) *tokenChecker {
	if clock == nil {
		clock = SystemClock{}
	}
	return &tokenChecker{servers: servers, clock: clock, ttl: tokenCacheTTL, size: tokenCacheSize,
		asks: acl.NewLimiter(tokenAskRate, tokenAskBurst), cache: map[[sha256.Size]byte]tokenAnswer{}}
}

// check returns the token whose secret a caller from source (its
// address) presented, or an API error: Unauthorized when the secret is
// malformed, unknown or revoked, TooManyRequests when source caused too
// many questions to the servers lately, ServiceUnavailable when no server
// could say.
func (t *tokenChecker) check(ctx context.Context, secret, source string) (api.TokenInfo, error) {
	if _, ok := acl.SecretID(secret); !ok {
		return api.TokenInfo{}, apierrors.NewUnauthorized("the token is malformed: a token is the secret 'stead acl bootstrap' or 'stead acl token create' printed")
	}
	key := sha256.Sum256([]byte(secret))
	now := t.clock.Now()
	t.mu.Lock()
	ans, ok := t.cache[key]
	t.mu.Unlock()
	if !ok || !now.Before(ans.expires) {
		if ok, retry := t.asks.Allow(source, now); !ok {
			secs := int(math.Ceil(retry.Seconds()))
			return api.TokenInfo{}, apierrors.NewTooManyRequests(fmt.Sprintf("too many unknown tokens from %s; retry in %ds", source, secs), secs)
		}
		var err error
		if ans, err = t.ask(ctx, secret); err != nil {
			return api.TokenInfo{}, err
		}
		ans.expires = now.Add(t.ttl)
		t.remember(key, ans, now)
	}
	if ans.refused != nil {
		return api.TokenInfo{}, ans.refused
	}
	return *ans.info, nil
}

// ask asks a server about secret. The answer is an error only when the
// server said nothing about the token.
func (t *tokenChecker) ask(ctx context.Context, secret string) (tokenAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, tokenCheckTimeout)
	defer cancel()
	c := t.servers.client()
	// The pool's client with the caller's token instead of the agent's.
	asCaller := *c
	asCaller.Token = secret
	var info api.TokenInfo
	_, err := asCaller.Do(ctx, http.MethodGet, "/v1/acl/token/self", nil, nil, &info)
	switch {
	case err == nil:
		return tokenAnswer{info: &info}, nil
	case apierrors.IsUnauthorized(err):
		return tokenAnswer{refused: err}, nil
	}
	t.servers.failed(c, err)
	return tokenAnswer{}, apierrors.NewServiceUnavailable(fmt.Sprintf("the agent cannot check the token with server %s: %v", c.Addr(), err))
}

// remember keeps ans for key, making room when the cache is full.
func (t *tokenChecker) remember(key [sha256.Size]byte, ans tokenAnswer, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.cache[key]; !ok && len(t.cache) >= t.size {
		for k, old := range t.cache {
			if !now.Before(old.expires) {
				delete(t.cache, k)
			}
		}
		for k := range t.cache {
			if len(t.cache) < t.size {
				break
			}
			delete(t.cache, k)
		}
	}
	t.cache[key] = ans
}
