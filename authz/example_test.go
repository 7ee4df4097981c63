package authz_test

import (
	"fmt"
	"log"
	"net/http"

	"github.com/fixity-dev/packer-plugin-fixity/authz"
)

// A Go service inside the image verifies each request's bearer token against the
// bundle the fixity-oidc provisioner baked in. Build the Authorizer once.
func Example() {
	a, err := authz.Open("/etc/fixity", authz.Options{})
	if err != nil {
		log.Fatal(err) // unreadable or tampered bundle: refuse to start
	}
	http.HandleFunc("/deploy", func(w http.ResponseWriter, r *http.Request) {
		d := a.Check(r.Context(), authz.Request{
			Token:      authz.BearerToken(r.Header.Get("Authorization")),
			Permission: "service:deploy",
			Resource:   "svc/payments/api",
		})
		if !d.Allow {
			http.Error(w, d.Reason, http.StatusForbidden) // the reason code, never the token
			return
		}
		fmt.Fprintf(w, "deploying as %s (profile %s) until %s\n", d.Subject, d.Profile, d.ExpiresAt)
	})
}

// Reverse proxies use the HTTP protocol of `fixity authz serve` instead.
func ExampleHandler() {
	a, err := authz.Open("/etc/fixity", authz.Options{})
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.ListenAndServe("127.0.0.1:8181", authz.Handler(a, authz.HandlerOptions{DefaultPermission: "service:deploy"})))
}
