// Package ca is the swarm's public key infrastructure: the root CA, node
// certificates, join tokens, the node's TLS material on disk, mutual TLS
// configurations, per-method authorization, the CA and NodeCA gRPC services
// and a client for external CFSSL signers.
//
// # Certificates
//
// CreateRootCA makes a self-signed ECDSA P-256 root valid for 20 years with
// cfssl's initca. Node certificates (RootCA.IssueNodeCertificate, signed
// with cfssl's local signer, or ExternalCA through a CFSSL endpoint) carry
// CN = node ID, OU = swarm-manager or swarm-worker, O = cluster ID and the
// DNS names <role> and <node ID>; they allow client and server
// authentication and live DefaultNodeCertExpiry (90 days) unless the
// cluster's CA config says otherwise. The subject always comes from the
// CA's arguments, never from the CSR. Nodes renew at a random point between
// 50% and 80% of the lifetime (RenewalDelay) and after a role change.
//
// # Joining: trust on first use, pinned by the token
//
// A join token is SWMTKN-1-<digest>-<secret>: the SHA-256 digest of the
// root CA certificate (DER, 50 base-36 digits) and 128 random bits (25
// base-36 digits). A node without a certificate (Join):
//
//  1. dials a manager over TLS without verifying it (BootstrapCredentials)
//     and fetches the root CA certificate with CA.GetRootCACertificate,
//     sending nothing secret;
//  2. accepts that certificate only if its digest is the token's
//     (JoinToken.VerifyRoot; otherwise "remote CA does not match
//     fingerprint");
//  3. dials again verifying the manager against that root and the server
//     name swarm-manager, without a client certificate, and sends its CSR
//     and the token with NodeCA.IssueNodeCertificate; the manager compares
//     the token with the cluster's in constant time, decides the role from
//     it, creates the node and signs;
//  4. fetches its certificate with NodeCA.NodeCertificateStatus, checks it,
//     stores root, certificate and key (KeyReadWriter) and uses them for
//     every later connection (SecurityConfig).
//
// An attacker between the node and the manager can answer step 1 but not
// with the pinned root, and never sees the token, which only travels over
// the verified connection of step 3.
//
// # Authorization
//
// Servers request but do not require client certificates, so joining nodes
// can reach the two methods open to anyone. Every method is listed in
// MethodRoles with the roles that may call it; the Authorizer's
// interceptors check the verified peer certificate (role from OU, cluster
// from O, validity) and deny methods missing from the table.
package ca
