package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/api"
)

// fakeTokenServer answers GET /v1/acl/token/self from a table of secrets
// it can change, and counts the questions per secret.
type fakeTokenServer struct {
	mu     sync.Mutex
	tokens map[string]api.TokenInfo
	// down makes it answer 500.
	down  bool
	asked map[string]int
}

func (f *fakeTokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	secret := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.asked[secret]++
	w.Header().Set("Content-Type", "application/json")
	if f.down {
		w.WriteHeader(http.StatusInternalServerError)
		json.NewEncoder(w).Encode(metav1.Status{Status: metav1.StatusFailure, Code: 500, Message: "no leader"})
		return
	}
	info, ok := f.tokens[secret]
	if r.URL.Path != "/v1/acl/token/self" || !ok {
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(metav1.Status{Status: metav1.StatusFailure, Code: 401, Reason: metav1.StatusReasonUnauthorized, Message: "the token is not known to this cluster"})
		return
	}
	json.NewEncoder(w).Encode(info)
}

func (f *fakeTokenServer) set(secret string, info *api.TokenInfo, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if info == nil {
		delete(f.tokens, secret)
	} else {
		f.tokens[secret] = *info
	}
	f.down = down
}

func (f *fakeTokenServer) questions(secret string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked[secret]
}

// secretOf makes a well-formed secret of token id.
func secretOf(id string, key byte) string {
	return id + "." + strings.Repeat(string("0123456789abcdef"[key%16]), 64)
}

// TestTokenChecker follows one checker through a sequence of steps on a
// fake clock: what each check answers and how many questions the server
// got for the secret so far.
func TestTokenChecker(t *testing.T) {
	srv := &fakeTokenServer{tokens: map[string]api.TokenInfo{}, asked: map[string]int{}}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	pool, err := newServerPool([]string{hs.URL}, api.ClientOptions{Token: "the agent's own"})
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	tc := newTokenChecker(pool, clock)
	tc.size = 3

	ops := secretOf("00000000000000a1", 1)
	ro := secretOf("00000000000000b2", 2)
	unknown := secretOf("00000000000000c3", 3)
	srv.set(ops, &api.TokenInfo{ID: "00000000000000a1", Role: api.TokenManagement}, false)
	srv.set(ro, &api.TokenInfo{ID: "00000000000000b2", Role: api.TokenReadOnly}, false)

	type step struct {
		name    string
		do      func()
		secret  string
		want    api.TokenRole // "" : refused
		code    int32         // of the refusal
		asked   int           // questions about secret so far
		advance time.Duration // before the check
	}
	steps := []step{
		{name: "management token, asked", secret: ops, want: api.TokenManagement, asked: 1},
		{name: "management token again, cached", secret: ops, want: api.TokenManagement, asked: 1},
		{name: "unknown token, asked", secret: unknown, code: 401, asked: 1},
		{name: "unknown token again, cached refusal", secret: unknown, code: 401, asked: 1},
		{name: "malformed token, never asked", secret: "not-a-token", code: 401, asked: 0},
		{name: "revoked on the server, still cached", do: func() { srv.set(ops, nil, false) }, secret: ops, want: api.TokenManagement, asked: 1,
			advance: tokenCacheTTL - time.Second},
		{name: "revoked, refused once the answer expired", secret: ops, code: 401, asked: 2, advance: time.Second},
		{name: "servers down: unavailable", do: func() { srv.set(ro, &api.TokenInfo{ID: "00000000000000b2", Role: api.TokenReadOnly}, true) },
			secret: ro, code: 503, asked: 1},
		{name: "servers down: not remembered, asked again", secret: ro, code: 503, asked: 2},
		{name: "servers back", do: func() { srv.set(ro, &api.TokenInfo{ID: "00000000000000b2", Role: api.TokenReadOnly}, false) },
			secret: ro, want: api.TokenReadOnly, asked: 3},
	}
	for _, s := range steps {
		if s.do != nil {
			s.do()
		}
		clock.Advance(s.advance)
		info, err := tc.check(context.Background(), s.secret, "10.0.0.1")
		switch {
		case s.want != "" && (err != nil || info.Role != s.want):
			t.Errorf("%s: got %+v, %v; want role %s", s.name, info, err, s.want)
		case s.want == "" && codeOf(err) != s.code:
			t.Errorf("%s: got %+v, %v; want refusal %d", s.name, info, err, s.code)
		}
		if got := srv.questions(s.secret); got != s.asked {
			t.Errorf("%s: the server was asked %d times about the secret, want %d", s.name, got, s.asked)
		}
	}

	// A source that sends many tokens the checker has no answer for is
	// told to wait once it used its burst; another source is not.
	var codes []int32
	for i := range tokenAskBurst + 1 {
		_, err := tc.check(context.Background(), secretOf(fmt.Sprintf("%016x", 0xe000+i), byte(i)), "10.0.0.3")
		codes = append(codes, codeOf(err))
	}
	if want := append(slices.Repeat([]int32{401}, tokenAskBurst), 429); !slices.Equal(codes, want) {
		t.Errorf("unknown tokens from one source answered %v, want %v", codes, want)
	}
	last := secretOf(fmt.Sprintf("%016x", 0xe000+tokenAskBurst-1), byte(tokenAskBurst-1))
	if _, err := tc.check(context.Background(), last, "10.0.0.3"); codeOf(err) != 401 {
		t.Errorf("a token with a kept answer, from a limited source: %v, want the kept 401", err)
	}
	if _, err := tc.check(context.Background(), secretOf("00000000000000f1", 1), "10.0.0.4"); codeOf(err) != 401 {
		t.Errorf("an unknown token from another source: %v, want 401", err)
	}

	// The cache holds at most size answers.
	for i := range 5 {
		tc.check(context.Background(), secretOf("00000000000000d"+string("01234"[i]), byte(i)), "10.0.0.2")
	}
	tc.mu.Lock()
	n := len(tc.cache)
	tc.mu.Unlock()
	if n != tc.size {
		t.Errorf("the cache holds %d answers, want its bound %d", n, tc.size)
	}
}

func codeOf(err error) int32 {
	if se, ok := err.(apierrors.APIStatus); ok {
		return se.Status().Code
	}
	return 0
}

func TestAccessOf(t *testing.T) {
	for _, c := range []struct {
		method, path string
		want         access
	}{
		{"GET", "/v1/health", accessOpen},
		{"HEAD", "/v1/health", accessOpen},
		{"GET", "/v1/logs/default/web-0", accessRead},
		{"GET", "/v1/images", accessRead},
		{"GET", "/metrics", accessRead},
		{"POST", "/v1/exec/default/web-0", accessWrite},
		{"POST", "/v1/images", accessWrite},
		{"DELETE", "/v1/images", accessWrite},
		{"POST", "/v1/logs/default/web-0", accessWrite},
		{"GET", "/v1/logs/default/web-0/../../exec", accessWrite},
		{"GET", "/v1/exec/default/web-0", accessWrite},
		{"GET", "/v1/other", accessWrite},
	} {
		r := httptest.NewRequest(c.method, "http://agent"+c.path, nil)
		if got := accessOf(r); got != c.want {
			t.Errorf("%s %s: access %d, want %d", c.method, c.path, got, c.want)
		}
	}
}
