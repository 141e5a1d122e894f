//! Compiled policies: actions with their include / exclude / require rules.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::v1alpha1::PolicyAction;

/// One policy, validated.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Policy {
    pub name: String,
    pub action: PolicyAction,
    /// Never empty.
    pub include: Vec<Rule>,
    pub exclude: Vec<Rule>,
    pub require: Vec<Rule>,
}

/// One selector, validated and normalised.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Rule {
    /// Lower-case address.
    Email(String),
    /// Lower-case domain, matched exactly against the part after `@`.
    EmailDomain(String),
    /// A value of the `groups` claim.
    Group(String),
    /// Any authenticated identity; never an anonymous request.
    Everyone,
    /// The peer address (or a trusted proxy's `X-Forwarded-For`) is inside this network.
    IpRange(IpNet),
    /// This service token (by AccessServiceToken name).
    ServiceToken(String),
    /// Any unexpired service token of the application.
    AnyValidServiceToken,
    /// A string claim equal to `value`, or an array claim containing it.
    Claim { name: String, value: String },
}
