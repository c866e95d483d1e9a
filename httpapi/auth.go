package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/tlsutil"
)

// Members-only authentication (DESIGN.md, "Members-only authentication").
// With Options.Members set, the member a request comes from is the one its
// TLS client certificate names; api.HeaderForwarded only prevents loops
// and must name that same member.

// MemberAuthenticator returns an Options.Members that takes a request's
// caller for the member its verified TLS client certificate names, as
// peer (the peer CA) verifies it: signed by the peer CA, for client use,
// with a member URI SAN (tlsutil.VerifyMember). It fails with
// ErrPermissionDenied for a request not over TLS, without a client
// certificate, or with one that is not a member's (a client certificate
// from the same CA is not).
func MemberAuthenticator(peer *tlsutil.Source) func(*http.Request) (string, error) {
	return func(r *http.Request) (string, error) {
		if r.TLS == nil {
			return "", fmt.Errorf("%w: not a TLS connection", ErrPermissionDenied)
		}
		if len(r.TLS.PeerCertificates) == 0 {
			return "", fmt.Errorf("%w: no client certificate", ErrPermissionDenied)
		}
		id, err := peer.VerifyMember(r.TLS.PeerCertificates)
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrPermissionDenied, err)
		}
		return id, nil
	}
}

// member authenticates the caller of a members-only route and returns its
// id. Without authentication (no TLS) it is the one api.HeaderForwarded
// names, "" when none does. With it, the caller must be a member, and an
// api.HeaderForwarded it sends must name that member. what says what
// needs the member certificate, for the refusal's message.
func (h *handler) member(r *http.Request, what string) (string, error) {
	claimed := r.Header.Get(api.HeaderForwarded)
	if h.auth == nil {
		return claimed, nil
	}
	id, err := h.auth(r)
	if err == nil && id == "" {
		err = errors.New("the authenticator named no member")
	}
	if err != nil {
		return "", fmt.Errorf("%w: members only: %s needs a member certificate (%s)", ErrPermissionDenied, what, reason(err))
	}
	if claimed != "" && claimed != id {
		return "", fmt.Errorf("%w: %s names member %q but the certificate is member %q's", ErrPermissionDenied, api.HeaderForwarded, claimed, id)
	}
	return id, nil
}

// reason is err's message without a leading ErrPermissionDenied, to
// mention it in another ErrPermissionDenied.
func reason(err error) string {
	return strings.TrimPrefix(err.Error(), ErrPermissionDenied.Error()+": ")
}

// forwardedContext is the request's context, marked as forwarded when a
// member sent it (so the Service does not forward it again). The mark
// only prevents loops between members with stale views of the leader; it
// grants nothing. A request without api.HeaderForwarded is a client's and
// is not authenticated here. One with it must, with authentication (TLS),
// come from the member it names: from anyone else it is refused with
// ErrPermissionDenied rather than served as a client's, so that a
// misconfigured member fails loudly.
func (h *handler) forwardedContext(r *http.Request) (context.Context, error) {
	if r.Header.Get(api.HeaderForwarded) == "" {
		return r.Context(), nil
	}
	from, err := h.member(r, "a request marked "+api.HeaderForwarded)
	if err != nil {
		return nil, err
	}
	return WithForwarded(r.Context(), from), nil
}
