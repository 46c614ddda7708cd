//! auth-service's actions.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{payload, unknown};
use crate::client::ServerFrame;

/// `{"userRegData": {"email", "password"}}`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Register {
    pub user_reg_data: Credentials,
}

/// `{"userRegData": {"email", "token"}}`: the code from the e-mail.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Confirmation {
    pub user_reg_data: EmailAndToken,
}

/// `{"userRegData": {"email"}}`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResendConfirmation {
    pub user_reg_data: EmailOnly,
}

/// `{"userLoginData": {"email", "password"}}`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Login {
    pub user_login_data: Credentials,
}

/// `{"userLoginData": {"email", "token"}}`: a session token, for FASTLOGIN
/// and LOGOUT.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionToken {
    pub user_login_data: EmailAndToken,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EmailAndToken {
    pub email: String,
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EmailOnly {
    pub email: String,
}

/// `{"nickname"}`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UpdateProfile {
    pub nickname: String,
}

/// An action auth-service handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthAction {
    Register(Register),
    Confirmation(Confirmation),
    ResendConfirmation(ResendConfirmation),
    Login(Login),
    FastLogin(SessionToken),
    Logout(SessionToken),
    UpdateProfile(UpdateProfile),
}

impl AuthAction {
    /// Every action name this enum parses.
    pub const NAMES: &[&str] = &[
        "REGISTER",
        "CONFIRMATION",
        "RESEND_CONFIRMATION",
        "LOGIN",
        "FASTLOGIN",
        "LOGOUT",
        "UPDATE_PROFILE",
    ];

    /// The action `name` with `fields`, or the frame that refuses it.
    pub fn parse(name: &str, fields: &Map<String, Value>) -> Result<Self, ServerFrame> {
        Ok(match name {
            "REGISTER" => AuthAction::Register(payload(name, fields)?),
            "CONFIRMATION" => AuthAction::Confirmation(payload(name, fields)?),
            "RESEND_CONFIRMATION" => AuthAction::ResendConfirmation(payload(name, fields)?),
            "LOGIN" => AuthAction::Login(payload(name, fields)?),
            "FASTLOGIN" => AuthAction::FastLogin(payload(name, fields)?),
            "LOGOUT" => AuthAction::Logout(payload(name, fields)?),
            "UPDATE_PROFILE" => AuthAction::UpdateProfile(payload(name, fields)?),
            other => return Err(unknown("auth-service", other)),
        })
    }

    /// The name the action has on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            AuthAction::Register(_) => "REGISTER",
            AuthAction::Confirmation(_) => "CONFIRMATION",
            AuthAction::ResendConfirmation(_) => "RESEND_CONFIRMATION",
            AuthAction::Login(_) => "LOGIN",
            AuthAction::FastLogin(_) => "FASTLOGIN",
            AuthAction::Logout(_) => "LOGOUT",
            AuthAction::UpdateProfile(_) => "UPDATE_PROFILE",
        }
    }
}
