//! The admin token check: every call, reflection included, must carry
//! `authorization: Bearer <token>`. The token is compared as SHA-256 digests in constant time,
//! so neither its content nor its length leaks through timing; an empty configured token
//! refuses every call.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The interceptor in front of every admin service. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AdminAuth {
    /// `None`: no token configured, nobody gets in.
    digest: Option<[u8; 32]>,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth").field("configured", &self.digest.is_some()).finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl AdminAuth {
    pub(crate) fn new(token: &str) -> Self {
        Self { digest: (!token.is_empty()).then(|| digest(token)) }
    }

    /// Whether `header` (the whole `authorization` value) carries the admin token.
    pub(crate) fn check(&self, header: Option<&str>) -> Result<(), Status> {
        let Some(header) = header else {
            return Err(Status::unauthenticated("missing admin token: send `authorization: Bearer <token>`"));
        };
        let presented = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| Status::unauthenticated("the authorization header must be `Bearer <token>`"))?;
        let Some(expected) = &self.digest else {
            return Err(Status::unauthenticated("no admin token is configured on this node (FLYWHEEL_ADMIN_TOKEN)"));
        };
        if bool::from(digest(presented).ct_eq(expected)) {
            Ok(())
        } else {
            Err(Status::unauthenticated("invalid admin token"))
        }
    }
}

impl Interceptor for AdminAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let header = request.metadata().get("authorization").map(|v| v.to_str());
        match header {
            Some(Err(_)) => Err(Status::unauthenticated("the authorization header is not text")),
            Some(Ok(value)) => self.check(Some(value)).map(|()| request),
            None => self.check(None).map(|()| request),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_passes() {
        let auth = AdminAuth::new("s3cret");
        assert!(auth.check(Some("Bearer s3cret")).is_ok());
        assert!(auth.check(Some("bearer s3cret")).is_ok());
        for bad in [None, Some("s3cret"), Some("Bearer s3cre"), Some("Bearer s3cret2"), Some("Basic s3cret")] {
            let e = auth.check(bad).expect_err("refused");
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
    }

    #[test]
    fn no_configured_token_refuses_everything() {
        let auth = AdminAuth::new("");
        assert_eq!(auth.check(Some("Bearer ")).expect_err("refused").code(), tonic::Code::Unauthenticated);
        assert_eq!(auth.check(Some("Bearer x")).expect_err("refused").code(), tonic::Code::Unauthenticated);
    }
}
