package authz

import "github.com/fixity-dev/packer-plugin-fixity/policy"

// Reason codes. They are part of the public contract: `fixity authz check -o json`,
// the HTTP server's X-Fixity-Reason header and audit records carry them, and operators
// alert on them, so a code never changes meaning once released. Every deny has one;
// an allow has ReasonAllow. Codes for claims-level checks are the policy package's
// own, because the build-time test runner reports the same checks with the same codes.
const (
	ReasonAllow = policy.ReasonAllow // "allow"

	// Request and token shape.
	ReasonBadRequest     = policy.ReasonBadRequest // no permission asked for, or an unusable request path
	ReasonTokenMissing   = "token_missing"         // no token was presented
	ReasonTokenTooLarge  = "token_too_large"       // over Options.MaxTokenBytes (16 KiB default)
	ReasonTokenMalformed = "token_malformed"       // not a compact JWS with a JSON header and claims

	// Header.
	ReasonAlgNotAllowed = "alg_not_allowed" // alg not in the issuer's allowlist (none and HS* never are)
	ReasonCritHeader    = "crit_header"     // a "crit" header asks for extensions nobody here understands

	// Issuer routing and keys.
	ReasonUnknownIssuer   = policy.ReasonUnknownIssuer  // iss is not exactly one configured issuer URL
	ReasonIssuerMismatch  = policy.ReasonIssuerMismatch // the verified iss differs from the routed issuer
	ReasonUnknownKID      = "unknown_kid"               // kid names no key of the issuer (after a refresh where allowed)
	ReasonBadSignature    = "bad_signature"             // the signature does not verify with the issuer's key
	ReasonKeysUnavailable = "keys_unavailable"          // remote JWKS mode and the keys could not be fetched

	// Audience.
	ReasonAudienceMismatch  = policy.ReasonAudienceMismatch  // aud is not the issuer's one audience
	ReasonMultipleAudiences = policy.ReasonMultipleAudiences // aud lists more than one audience
	ReasonAZPMismatch       = "azp_mismatch"                 // azp present and not the audience

	// Time (one leeway: the issuer's clock_skew).
	ReasonExpired          = policy.ReasonExpired          // exp + leeway is past
	ReasonNotYetValid      = policy.ReasonNotYetValid      // nbf - leeway is in the future
	ReasonIssuedInFuture   = policy.ReasonIssuedInFuture   // iat - leeway is in the future
	ReasonLifetimeExceeded = policy.ReasonLifetimeExceeded // exp - iat over max_token_lifetime
	ReasonExpMissing       = policy.ReasonExpMissing       // no exp
	ReasonIatMissing       = policy.ReasonIatMissing       // no iat
	ReasonBadTimeClaim     = policy.ReasonBadTimeClaim     // exp/nbf/iat not a number

	// Replay (single_use profiles).
	ReasonJTIMissing = "jti_missing" // a single_use profile needs a jti
	ReasonReplay     = "replay"      // this jti was already used for a single_use profile

	// Internal: a bug. Still a deny.
	ReasonInternal = "internal_error"
)

// Policy-level reasons come from policy.Evaluator: schema_violation, tenant_mismatch,
// no_identity, denied_by_binding, not_granted, unknown_profile, resource_not_granted.
