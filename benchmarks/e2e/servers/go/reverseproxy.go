// Scenarios 10 and 11: Go's net/http/httputil.ReverseProxy, the engine under authentik's outpost
// and oauth2-proxy, built from the standard library alone and run with GOMAXPROCS=1 so that the
// comparison with the one-process Node servers is per core.
//
//	-mode bare     proxy every request as it is
//	-mode session  first do the per-request work of oauth2-proxy's cookie sessions: split the
//	               cookie "<base64 sealed session>|<unix time>|<base64 HMAC-SHA256>", check the
//	               signature (constant time) and the age, open the AES-256-GCM seal, decode the
//	               JSON session (user, email, groups, an ID token of about 1 KB), refuse with 401
//	               otherwise, then set the identity headers on the upstream request.
//
// GET /__mint answers a valid session cookie (the harness's stand-in for a login: the
// per-request cost is what is measured, not the OIDC flow).
package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const cookieName = "_oauth2_proxy"

type session struct {
	User    string   `json:"user"`
	Email   string   `json:"email"`
	Groups  []string `json:"groups"`
	IDToken string   `json:"id_token"`
	Expires int64    `json:"expires_on"`
}

type sealer struct {
	aead cipher.AEAD
	mac  []byte
}

func (s *sealer) sign(value, ts string) []byte {
	h := hmac.New(sha256.New, s.mac)
	h.Write([]byte(cookieName))
	h.Write([]byte(value))
	h.Write([]byte(ts))
	return h.Sum(nil)
}

func (s *sealer) mint(sess session) string {
	plain, _ := json.Marshal(sess)
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	sealed := s.aead.Seal(nonce, nonce, plain, nil)
	value := base64.RawURLEncoding.EncodeToString(sealed)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	return value + "|" + ts + "|" + base64.RawURLEncoding.EncodeToString(s.sign(value, ts))
}

func (s *sealer) open(cookie string) (*session, bool) {
	parts := strings.Split(cookie, "|")
	if len(parts) != 3 {
		return nil, false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, s.sign(parts[0], parts[1])) {
		return nil, false
	}
	ts, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)) > 168*time.Hour {
		return nil, false
	}
	sealed, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || len(sealed) < s.aead.NonceSize() {
		return nil, false
	}
	plain, err := s.aead.Open(nil, sealed[:s.aead.NonceSize()], sealed[s.aead.NonceSize():], nil)
	if err != nil {
		return nil, false
	}
	var sess session
	if json.Unmarshal(plain, &sess) != nil || sess.Expires < time.Now().Unix() {
		return nil, false
	}
	return &sess, true
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "host:port")
	upstream := flag.String("upstream", "", "upstream origin")
	mode := flag.String("mode", "bare", "bare or session")
	flag.Parse()
	target, err := url.Parse(*upstream)
	if err != nil || target.Host == "" {
		log.Fatalf("bad -upstream %q", *upstream)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 128, IdleConnTimeout: 90 * time.Second}

	key := make([]byte, 32)
	mac := make([]byte, 32)
	rand.Read(key)
	rand.Read(mac)
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	s := &sealer{aead: aead, mac: mac}

	var handler http.Handler = proxy
	if *mode == "session" {
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/__mint" {
				idToken := strings.Repeat("x", 1024)
				c := s.mint(session{User: "alice", Email: "alice@example.com", Groups: []string{"admins", "staff"}, IDToken: idToken, Expires: time.Now().Add(time.Hour).Unix()})
				http.SetCookie(w, &http.Cookie{Name: cookieName, Value: c, Path: "/", HttpOnly: true})
				w.WriteHeader(http.StatusNoContent)
				return
			}
			c, err := r.Cookie(cookieName)
			if err != nil {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			sess, ok := s.open(c.Value)
			if !ok {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			r.Header.Del("Cookie")
			r.Header.Set("X-Forwarded-User", sess.User)
			r.Header.Set("X-Forwarded-Email", sess.Email)
			r.Header.Set("X-Forwarded-Groups", strings.Join(sess.Groups, ","))
			r.Header.Set("X-authentik-username", sess.User)
			r.Header.Set("X-authentik-email", sess.Email)
			r.Header.Set("X-authentik-groups", strings.Join(sess.Groups, "|"))
			r.Header.Set("X-authentik-jwt", sess.IDToken)
			proxy.ServeHTTP(w, r)
		})
	} else if *mode != "bare" {
		log.Fatalf("bad -mode %q", *mode)
	}
	log.Fatal(http.ListenAndServe(*listen, handler))
}
