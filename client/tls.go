package client

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// tlsFailure returns err, the failure to get an answer from ep, as an
// ErrTLS error naming its cause when it is a TLS failure that retrying
// will not fix, else nil.
func tlsFailure(ep string, err error) error {
	var (
		unknown  x509.UnknownAuthorityError
		invalid  x509.CertificateInvalidError
		hostname x509.HostnameError
		verify   *tls.CertificateVerificationError
		record   tls.RecordHeaderError
		op       *net.OpError
	)
	switch {
	case errors.As(err, &unknown):
		return tlsError(ep, "the server's certificate is not signed by a CA in --cacert/CAFile, or the system's roots when none is given", unknown)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		msg := "the server's certificate has expired or is not yet valid"
		if invalid.Cert != nil {
			msg += fmt.Sprintf(", valid from %s to %s", invalid.Cert.NotBefore.UTC().Format(time.RFC3339),
				invalid.Cert.NotAfter.UTC().Format(time.RFC3339))
		}
		return tlsError(ep, msg, invalid)
	case errors.As(err, &hostname):
		return tlsError(ep, fmt.Sprintf("the server's certificate is not valid for host %s: it names %s",
			hostname.Host, certNames(hostname.Certificate)), hostname)
	case errors.As(err, &invalid):
		return tlsError(ep, "the server's certificate is not valid", invalid)
	case errors.As(err, &verify):
		return tlsError(ep, "the server's certificate did not verify", verify)
	case errors.Is(err, http.ErrSchemeMismatch):
		return tlsError(ep, "https:// used but the server speaks plain HTTP", http.ErrSchemeMismatch)
	case errors.As(err, &record):
		if bytes.HasPrefix(record.RecordHeader[:], []byte("HTTP/")) {
			return tlsError(ep, "https:// used but the server speaks plain HTTP", record)
		}
		return tlsError(ep, "https:// used but the server does not speak TLS", record)
	case errors.As(err, &op) && op.Op == "remote error" && op.Err != nil:
		// An alert the server sent during or right after the handshake
		// (in TLS 1.3 the server checks the client's certificate after
		// the client has finished its handshake, so the alert arrives
		// when the answer is read).
		switch alert := strings.TrimPrefix(op.Err.Error(), "tls: "); alert {
		case "certificate required":
			return tlsError(ep, "the server requires a client certificate and we sent none: set --cert and --key, or CertFile and KeyFile", op)
		case "expired certificate":
			return tlsError(ep, "the server refused our client certificate: it has expired or is not yet valid", op)
		case "bad certificate", "unknown certificate authority", "unsupported certificate",
			"revoked certificate", "unknown certificate", "access denied":
			return tlsError(ep, "the server refused our client certificate, or wanted one", op)
		case "protocol version not supported", "handshake failure", "insufficient security", "no application protocol":
			return tlsError(ep, "the server refused the TLS handshake: no protocol version, cipher suite or application protocol in common", op)
		}
	}
	return nil
}

// plainToTLSAnswer reports whether an answer is a TLS server's refusal of
// a plain HTTP request (Go's net/http server, nginx), and then returns
// it as an ErrTLS error.
func plainToTLSAnswer(ep string, status int, body []byte) error {
	if status != http.StatusBadRequest {
		return nil
	}
	if bytes.Contains(body, []byte("sent an HTTP request to an HTTPS server")) ||
		bytes.Contains(body, []byte("plain HTTP request was sent to HTTPS port")) {
		return tlsError(ep, "http:// used but the server speaks HTTPS: use https:// endpoints", nil)
	}
	return nil
}

func tlsError(ep, msg string, cause error) error {
	if cause == nil {
		return fmt.Errorf("%w: %s: %s", ErrTLS, ep, msg)
	}
	return fmt.Errorf("%w: %s: %s (%w)", ErrTLS, ep, msg, cause)
}

// certNames lists the host names and addresses a certificate is valid
// for.
func certNames(c *x509.Certificate) string {
	if c == nil {
		return "nothing"
	}
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "no host names or addresses"
	}
	return strings.Join(names, ", ")
}
