//! JWKS fetching and caching (skeleton; the JWT work fills it in).
