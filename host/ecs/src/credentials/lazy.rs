//! A source built on first use, so that setting it up (reading variables, checking a role ARN)
//! happens when the chain reaches it, and its error — or its being unconfigured — is reported
//! like any other source's.
use futures::future::BoxFuture;

use super::{Credentials, CredentialsError, CredentialsProvider};

type Build = dyn Fn() -> Result<Box<dyn CredentialsProvider>, CredentialsError> + Send + Sync;

/// Builds its provider on the first call, then delegates to it (keeping its cache).
pub struct LazyProvider {
    name: String,
    build: Box<Build>,
    built: tokio::sync::OnceCell<Box<dyn CredentialsProvider>>,
}

impl LazyProvider {
    /// A provider `build` makes on first use; `name` describes it until then.
    pub fn new(
        name: impl Into<String>,
        build: impl Fn() -> Result<Box<dyn CredentialsProvider>, CredentialsError>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            build: Box::new(build),
            built: tokio::sync::OnceCell::new(),
        }
    }

    async fn read(&self) -> Result<Credentials, CredentialsError> {
        let provider = self
            .built
            .get_or_try_init(|| async { (self.build)() })
            .await?;
        provider.credentials().await
    }
}

impl CredentialsProvider for LazyProvider {
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(self.read())
    }
    fn describe(&self) -> String {
        match self.built.get() {
            Some(p) => p.describe(),
            None => self.name.clone(),
        }
    }
}
