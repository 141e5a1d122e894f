//! CORS decisions (skeleton; the CORS work fills it in).
