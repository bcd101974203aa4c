package gateway

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/eventpipe/eventpipe/pkg/config"
	"github.com/eventpipe/eventpipe/pkg/httpserver"
)

// The webhook authentication headers (README, "Webhook authentication").
const (
	headerToken     = "X-Webhook-Token"
	headerSignature = "X-Signature-256"
	signaturePrefix = "sha256="
)

const codeUnauthorized = "unauthorized"

// minSecretLen is the shortest token or HMAC secret accepted: anything
// shorter is guessable, so it is a mistake in the settings.
const minSecretLen = 16

// checkSecret fails the setting name when value is set but unusable. The
// message never holds the value: settings errors end up in logs.
func checkSecret(r *config.Reader, name, value string, header bool) {
	if value == "" {
		return
	}
	if len(value) < minSecretLen {
		r.Fail(name, "must be at least %d bytes, got %d", minSecretLen, len(value))
		return
	}
	// A token travels in a header: one that cannot be written there could
	// never match.
	if header && strings.IndexFunc(value, func(c rune) bool { return c <= ' ' || c > '~' }) >= 0 {
		r.Fail(name, "must be printable ASCII without spaces")
	}
}

// checkToken answers 401 unless the request carries the configured token,
// when there is one. It comes first: it needs only the headers. The log
// line says which check failed, never what was sent.
func (h *webhook) checkToken(c *gin.Context) bool {
	if h.opts.WebhookToken == "" || validToken(c.Request.Header, h.opts.WebhookToken) {
		return true
	}
	c.Header("WWW-Authenticate", `Bearer realm="webhook"`)
	httpserver.AddLogAttrs(c, "auth_error", "missing or wrong token")
	httpserver.Error(c, http.StatusUnauthorized, codeUnauthorized, "missing or wrong webhook token")
	return false
}

// checkSignature answers 401 unless the body carries a valid signature,
// when an HMAC secret is configured; a body over the limit gets 413.
//
// The verdict needs the whole body, and nothing may be published before
// it, so the body is read into memory while it is hashed and the request
// goes on from that buffer. That costs up to MaxBodyBytes per request in
// flight on top of the streaming path's own memory (the events are still
// copied into slabs for publishing, so about twice the body), instead of
// the few hundred KiB a streamed request holds: with signatures on,
// concurrent requests times twice MaxBodyBytes must fit the gateway's
// memory limit.
func (h *webhook) checkSignature(c *gin.Context) bool {
	if h.opts.WebhookHMACSecret == "" {
		return true
	}
	want, ok := parseSignature(c.GetHeader(headerSignature))
	if !ok {
		httpserver.AddLogAttrs(c, "auth_error", "missing or malformed signature")
		httpserver.Error(c, http.StatusUnauthorized, codeUnauthorized,
			headerSignature+" must be sha256= followed by the hex HMAC-SHA256 of the body")
		return false
	}
	body, err := readSigned(c.Writer, c.Request, h.opts.MaxBodyBytes, h.opts.WebhookHMACSecret, want)
	switch {
	case errors.Is(err, errBadSignature):
		httpserver.AddLogAttrs(c, "auth_error", "wrong signature")
		httpserver.Error(c, http.StatusUnauthorized, codeUnauthorized, "signature does not match the body")
		return false
	case err != nil:
		status, code, msg := h.bodyError(err, "")
		httpserver.Error(c, status, code, msg)
		return false
	}
	c.Request.Body = io.NopCloser(bytes.NewReader(body))
	return true
}

var errBadSignature = errors.New("signature does not match the body")

// readSigned reads the whole body, at most limit bytes, and returns it if
// its HMAC-SHA256 under secret is want.
func readSigned(w http.ResponseWriter, req *http.Request, limit int64, secret string, want []byte) ([]byte, error) {
	var buf bytes.Buffer
	if n := req.ContentLength; n > 0 && n <= limit {
		buf.Grow(int(n))
	}
	mac := hmac.New(sha256.New, []byte(secret))
	if _, err := io.Copy(io.MultiWriter(&buf, mac), http.MaxBytesReader(w, req.Body, limit)); err != nil {
		return nil, err
	}
	if !hmac.Equal(mac.Sum(nil), want) {
		return nil, errBadSignature
	}
	return buf.Bytes(), nil
}

// parseSignature decodes "sha256=<64 hex digits>" (either case).
func parseSignature(h string) ([]byte, bool) {
	hexSum, ok := strings.CutPrefix(h, signaturePrefix)
	if !ok || len(hexSum) != 2*sha256.Size {
		return nil, false
	}
	sum, err := hex.DecodeString(hexSum)
	return sum, err == nil
}

// validToken reports whether the request carries token in either header.
// Both headers are compared in full, whatever the first gives, so the time
// taken does not tell which one is close.
func validToken(h http.Header, token string) bool {
	bearer := ""
	if v := h.Get("Authorization"); len(v) > len("Bearer ") && strings.EqualFold(v[:len("Bearer ")], "Bearer ") {
		bearer = strings.TrimSpace(v[len("Bearer "):])
	}
	a := subtle.ConstantTimeCompare([]byte(bearer), []byte(token))
	b := subtle.ConstantTimeCompare([]byte(h.Get(headerToken)), []byte(token))
	return a|b == 1
}
