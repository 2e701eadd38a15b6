//! The server's readers of credentials: any text as a tokens file (it may
//! be refused, never panic), and any bearer string presented to a fixed
//! set of credentials (a static token and a JWT issuer with an EdDSA key).
//! A presented string is accepted only when it is the static token itself:
//! the fuzzer cannot sign, so anything else that verifies is a hole.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const STATIC_TOKEN: &str = "fuzz-static-token-0123456789";

fn tokens() -> &'static rein_server::Tokens {
    static TOKENS: OnceLock<rein_server::Tokens> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rein-fuzz-credentials-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("fuzz temp dir");
        std::fs::write(
            dir.join("jwks.json"),
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","alg":"EdDSA","use":"sig",
                "x":"WnaCauG_EWINZP_cABRjYg9zUsJ-__ZbbSUeUokUkEQ"}]}"#,
        )
        .expect("fuzz jwks");
        let text = format!(
            "tokens:\n  - {{name: bot, role: agent, token: {STATIC_TOKEN}, actor: {{id: bot}}, chain: [\"user:al\"], actions: [\"a.*\"]}}\n\
             issuers:\n  - name: corp\n    issuer: https://idp.example\n    audience: rein\n    jwks_file: jwks.json\n    actor: {{sub: id}}\n"
        );
        let path = dir.join("tokens.yaml");
        std::fs::write(&path, text).expect("fuzz tokens file");
        rein_server::Tokens::load(&path).expect("fuzz tokens file loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    if mode % 2 == 0 {
        let _ = rein_server::Tokens::parse("fuzz.yaml", text);
        return;
    }
    if let Ok(identity) = tokens().verify(text) {
        assert_eq!(text, STATIC_TOKEN, "a forged credential verified: {identity:?}");
    }
});
