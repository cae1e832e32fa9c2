//! Commit signatures, as git's `gpg.format=ssh` writes them: an SSHSIG armor in the commit's
//! `gpgsig` header over the commit without that header, in namespace `git`. A commit is
//! trusted when its signature is valid and its key is in the allowed signers (for namespace
//! `git` at the commit's committer time). Pure Rust (ssh-key): no ssh-keygen at run time.

use ssh_key::{HashAlg, SshSig};

use super::signers::AllowedSigner;

/// The namespace git signs commits in.
const NAMESPACE: &str = "git";

/// Who signed a trusted commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub principals: String,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// Checks one commit. `signature` is its `gpgsig` header (None when unsigned), `signed` the
/// bytes it signs, `committed_at` its committer time (unix seconds).
pub fn verify(
    signature: Option<&[u8]>,
    signed: &[u8],
    committed_at: i64,
    signers: &[AllowedSigner],
) -> Result<Signer, String> {
    let armor = signature.ok_or("the commit is not signed (hint: sign commits with an SSH key: git config gpg.format ssh, user.signingkey, commit.gpgsign true)")?;
    let armor = std::str::from_utf8(armor).map_err(|_| "the commit's signature is not text")?;
    if !armor
        .trim_start()
        .starts_with("-----BEGIN SSH SIGNATURE-----")
    {
        return Err("the commit carries a GPG or X.509 signature, not an SSH one (hint: sign with gpg.format=ssh)".into());
    }
    let sig = SshSig::from_pem(armor.trim())
        .map_err(|e| format!("the commit's SSH signature does not parse: {e}"))?;
    if sig.namespace() != NAMESPACE {
        return Err(format!(
            "the commit's signature is for namespace {:?}, not {NAMESPACE:?}",
            sig.namespace()
        ));
    }
    let fingerprint = sig.public_key().fingerprint(HashAlg::Sha256).to_string();
    let Some(signer) = signers
        .iter()
        .find(|s| s.has_key(sig.public_key()) && s.allows(NAMESPACE, committed_at))
    else {
        let known = signers.iter().any(|s| s.has_key(sig.public_key()));
        return Err(if known {
            format!("the commit is signed by {fingerprint}, which the allowed signers do not allow for git commits at the commit's time (namespaces, valid-after, valid-before)")
        } else {
            format!("the commit is signed by {fingerprint}, which is not in the allowed signers")
        });
    };
    signer
        .key
        .verify(NAMESPACE, signed, &sig)
        .map_err(|e| format!("the commit's signature by {fingerprint} is not valid: {e} (the commit was changed after signing?)"))?;
    Ok(Signer {
        principals: signer.principals.clone(),
        fingerprint,
    })
}
