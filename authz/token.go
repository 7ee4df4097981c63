package authz

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
)

// DefaultMaxTokenBytes bounds a presented token (research §6.4 step 1). CI tokens are
// 1–3 KiB; anything near 16 KiB is an attack on the parser or the key fetcher.
const DefaultMaxTokenBytes = 16 << 10

// header is the part of the JOSE header looked at before any key is touched.
type header struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit"`
}

// unverified is what routing needs from the claims before the signature is checked;
// nothing else from an unverified payload is ever used.
type unverified struct {
	Iss string `json:"iss"`
}

// denial is an internal error carrying its reason code.
type denial struct {
	reason string
	detail string
}

func (d *denial) Error() string { return d.reason + ": " + d.detail }

func deny(reason, detail string) *denial { return &denial{reason: reason, detail: detail} }

// splitToken performs steps 1–3 of the check order on the raw token: size, shape,
// header, and the unverified issuer used for routing.
func splitToken(raw string, max int) (header, unverified, *denial) {
	var h header
	var u unverified
	if raw == "" {
		return h, u, deny(ReasonTokenMissing, "no bearer token")
	}
	if len(raw) > max {
		return h, u, deny(ReasonTokenTooLarge, "token over the size limit")
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return h, u, deny(ReasonTokenMalformed, "not a compact JWS (header.payload.signature)")
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return h, u, deny(ReasonTokenMalformed, "header is not base64url")
	}
	if err := strictJSON(hb, &h); err != nil {
		return h, u, deny(ReasonTokenMalformed, "header is not a JSON object")
	}
	if len(h.Crit) > 0 && string(h.Crit) != "null" {
		return h, u, deny(ReasonCritHeader, "crit header extensions are not supported")
	}
	if h.Alg == "" || strings.EqualFold(h.Alg, "none") || strings.HasPrefix(strings.ToUpper(h.Alg), "HS") {
		return h, u, deny(ReasonAlgNotAllowed, "alg "+quote(h.Alg)+" is never accepted (asymmetric signatures only)")
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return h, u, deny(ReasonTokenMalformed, "payload is not base64url")
	}
	if err := strictJSON(pb, &u); err != nil {
		return h, u, deny(ReasonTokenMalformed, "payload is not a JSON object with a string iss")
	}
	if _, err := base64.RawURLEncoding.DecodeString(parts[2]); err != nil || parts[2] == "" {
		return h, u, deny(ReasonTokenMalformed, "signature is not base64url")
	}
	return h, u, nil
}

// strictJSON decodes one JSON object and refuses trailing data.
func strictJSON(b []byte, v any) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return errNotObject
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errNotObject
	}
	return nil
}

type jsonErr string

func (e jsonErr) Error() string { return string(e) }

const errNotObject = jsonErr("not a single JSON object")

// quote renders an attacker-controlled value for a detail message: short and printable.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strings.ToValidUTF8(jsonQuote(s), "?")
}

func jsonQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
