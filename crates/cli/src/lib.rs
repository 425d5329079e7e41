//! The parts of the `eventseal` command line that other programs and tests call directly.
//! The command line itself is `src/main.rs`.
#![deny(unsafe_code)] // one exception: loading the precompiled filter (`embedded`)

pub mod embedded;
pub mod reseal;
pub mod rewrap;
mod strings;

/// A one-line error for the user; never contains key material.
#[derive(Debug)]
pub struct Failure {
    message: String,
    /// The message is the filter's problem+json, printed as it is.
    problem: bool,
}

impl Failure {
    /// The message, one line (or the problem+json, for [`Failure::is_problem`]).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the message is the filter's problem+json body.
    pub fn is_problem(&self) -> bool {
        self.problem
    }

    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            problem: false,
        }
    }

    /// The filter refused: its problem+json body.
    pub fn problem(body: impl Into<String>) -> Self {
        Self {
            message: body.into(),
            problem: true,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}
