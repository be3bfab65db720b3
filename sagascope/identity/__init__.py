"""identity-service: logins (gRPC and HTTP) that issue RS256 JWTs, and the JWKS that verifies them."""
