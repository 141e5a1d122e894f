//! Compile errors and warnings: every problem names the resource, the field path and the fix.

use std::fmt;

/// What kind of problem a [`CompileError`] is, so callers (the admission webhook, events,
/// metrics) tell them apart by type rather than by field path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompileErrorKind {
    /// A field whose value cannot work (the message says why and how to fix it).
    Invalid,
    /// A referenced Secret, or a key of it, does not exist (yet): admission lets it through,
    /// since apply order must not matter; the controller reports it until it appears.
    SecretMissing,
    /// Two resources with the same name.
    Duplicate,
    /// A domain another application already serves.
    DomainTaken,
}

// === impl CompileErrorKind ===

impl CompileErrorKind {
    /// Stable label for metrics, events and logs.
    pub fn reason(self) -> &'static str {
        match self {
            CompileErrorKind::Invalid => "invalid_field",
            CompileErrorKind::SecretMissing => "secret_missing",
            CompileErrorKind::Duplicate => "duplicate_name",
            CompileErrorKind::DomainTaken => "domain_taken",
        }
    }
}

/// One reason a resource cannot be compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    pub kind: CompileErrorKind,
    /// `AccessApplication shop/api`.
    pub resource: String,
    /// Field path, `spec.cors.allowedOrigins[1]`.
    pub field: String,
    /// The offending value, when it is not a secret.
    pub value: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.resource, self.field)?;
        if let Some(v) = &self.value {
            write!(f, " {v:?}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Everything wrong with a set of resources, collected rather than stopping at the first.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct CompileErrors(pub Vec<CompileError>);

impl CompileError {
    /// Stable label of the problem (see [`CompileErrorKind::reason`]).
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }
}

impl CompileErrors {
    /// Label for metrics, events and condition reasons.
    pub fn reason(&self) -> &'static str {
        "InvalidSpec"
    }
}

impl fmt::Display for CompileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} configuration error{}", if n == 1 { "" } else { "s" })?;
        for e in &self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

/// Something that compiles but that a user should know about (a token that never expires,
/// a policy naming a service token that does not exist yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileWarning {
    pub resource: String,
    pub field: String,
    pub message: String,
}

impl fmt::Display for CompileWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.resource, self.field, self.message)
    }
}

/// Collects the errors and warnings of one resource while its parts are compiled.
#[derive(Debug)]
pub struct Diagnostics {
    resource: String,
    pub(crate) errors: Vec<CompileError>,
    pub(crate) warnings: Vec<CompileWarning>,
}

impl Diagnostics {
    /// `kind` and `id` name the resource in every message (`AccessApplication`, `shop/api`).
    pub fn new(kind: &str, id: impl fmt::Display) -> Self {
        Self { resource: format!("{kind} {id}"), errors: Vec::new(), warnings: Vec::new() }
    }

    /// Records an error on `field`; `value` is quoted in the message (never pass a secret).
    pub fn error(&mut self, field: impl Into<String>, value: Option<&str>, message: impl Into<String>) {
        self.error_of(CompileErrorKind::Invalid, field, value, message);
    }

    /// Records an error of `kind` on `field`.
    pub fn error_of(
        &mut self,
        kind: CompileErrorKind,
        field: impl Into<String>,
        value: Option<&str>,
        message: impl Into<String>,
    ) {
        self.errors.push(CompileError {
            kind,
            resource: self.resource.clone(),
            field: field.into(),
            value: value.map(str::to_owned),
            message: message.into(),
        });
    }

    pub fn warn(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(CompileWarning {
            resource: self.resource.clone(),
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    pub fn errors(&self) -> &[CompileError] {
        &self.errors
    }

    pub fn warnings(&self) -> &[CompileWarning] {
        &self.warnings
    }
}
