//! Policy evaluation (skeleton; the policy work fills it in).
