//! The options inside `#[unsync(...)]`.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Meta, Token};

/// Where the function runs.
#[derive(Clone, Copy)]
pub(crate) enum Mode {
    /// `async fn` on the runtime, plain `fn` on the blocking pool.
    Default,
    /// The rayon pool.
    Parallel,
    /// The worker-process pool.
    CpuBound,
    /// A remote worker through the Temporal server named by `UNSYNC_REMOTE` (the worker-process
    /// pool when it is unset).
    Remote(Remote),
}

impl Mode {
    /// The option that chose this mode, as written in `#[unsync(...)]` (for errors).
    pub(crate) fn option(self) -> &'static str {
        match self {
            Mode::Default => "",
            Mode::Parallel => "parallel",
            Mode::CpuBound => "cpu_bound",
            Mode::Remote(_) => "remote",
        }
    }

    /// Whether the function runs in another process (`cpu_bound` or `remote`): same rules.
    pub(crate) fn crosses(self) -> bool {
        matches!(self, Mode::CpuBound | Mode::Remote(_))
    }
}

/// The options of `#[unsync(remote, retries = N, timeout = "30s")]`.
#[derive(Clone, Copy, Default)]
pub(crate) struct Remote {
    /// Attempts after the first.
    pub(crate) retries: u32,
    /// The whole call's limit in milliseconds (0: none).
    pub(crate) timeout_ms: u64,
}

pub(crate) struct Options {
    pub(crate) mode: Mode,
    /// Path to the facade crate (`::unsync` unless renamed with `crate = "..."`).
    pub(crate) krate: syn::Path,
    /// `buffer = N`: how far a streaming function's producer may run ahead, and the option
    /// itself (for errors).
    pub(crate) buffer: Option<(usize, syn::MetaNameValue)>,
}

const OPTIONS: &str = "`parallel`, `cpu_bound`, `remote` (with `retries = N`, `timeout = \"30s\"`), `buffer = N` (streaming functions), or `crate = \"path\"` (for example `#[unsync]`, `#[unsync(parallel)]`, `#[unsync(cpu_bound)]`)";

impl Options {
    pub(crate) fn parse(args: TokenStream) -> syn::Result<Options> {
        let metas = Punctuated::<Meta, Token![,]>::parse_terminated
            .parse2(args)
            .map_err(|e| {
                syn::Error::new(
                    e.span(),
                    format!("cannot read the options: expected {OPTIONS}"),
                )
            })?;
        let mut mode = Mode::Default;
        let mut krate = None;
        let mut buffer = None;
        let mut remote = Remote::default();
        // `retries` and `timeout` as written, until we know the mode is `remote`.
        let mut remote_options = Vec::new();
        for meta in metas {
            match &meta {
                Meta::Path(path)
                    if path.is_ident("parallel")
                        || path.is_ident("cpu_bound")
                        || path.is_ident("remote") =>
                {
                    if !matches!(mode, Mode::Default) {
                        return Err(syn::Error::new_spanned(
                            path,
                            "choose one of `parallel` (rayon threads in this process), `cpu_bound` (worker processes) and `remote` (a cluster, or worker processes when none is configured)",
                        ));
                    }
                    mode = if path.is_ident("parallel") {
                        Mode::Parallel
                    } else if path.is_ident("cpu_bound") {
                        Mode::CpuBound
                    } else {
                        Mode::Remote(Remote::default())
                    };
                }
                Meta::NameValue(nv) if nv.path.is_ident("retries") => {
                    let syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Int(n),
                        ..
                    }) = &nv.value
                    else {
                        return Err(syn::Error::new_spanned(
                            &nv.value,
                            "write the retries as a number of attempts after the first: `retries = 2`",
                        ));
                    };
                    remote.retries = n.base10_parse::<u32>()?;
                    remote_options.push(nv.clone());
                }
                Meta::NameValue(nv) if nv.path.is_ident("timeout") => {
                    let syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(text),
                        ..
                    }) = &nv.value
                    else {
                        return Err(syn::Error::new_spanned(&nv.value, DURATION_FORMAT));
                    };
                    remote.timeout_ms = parse_duration_ms(&text.value())
                        .map_err(|why| syn::Error::new_spanned(&nv.value, why))?;
                    remote_options.push(nv.clone());
                }
                Meta::NameValue(nv) if nv.path.is_ident("remote") => {
                    return Err(syn::Error::new_spanned(
                        &meta,
                        "write `#[unsync(remote)]`, with its settings beside it: `#[unsync(remote, retries = 2, timeout = \"30s\")]`",
                    ));
                }
                Meta::NameValue(nv) if nv.path.is_ident("crate") => {
                    let syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(path),
                        ..
                    }) = &nv.value
                    else {
                        return Err(syn::Error::new_spanned(
                            &nv.value,
                            "write the path as a string: `crate = \"my_unsync\"`",
                        ));
                    };
                    krate = Some(path.parse::<syn::Path>()?);
                }
                Meta::NameValue(nv) if nv.path.is_ident("buffer") => {
                    let syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Int(n),
                        ..
                    }) = &nv.value
                    else {
                        return Err(syn::Error::new_spanned(
                            &nv.value,
                            "write the buffer as a number of items: `buffer = 64`",
                        ));
                    };
                    let n = n.base10_parse::<usize>()?;
                    if n == 0 {
                        return Err(syn::Error::new_spanned(
                            &nv.value,
                            "the buffer holds at least one item: the producer must be able to run one item ahead of its reader",
                        ));
                    }
                    buffer = Some((n, nv.clone()));
                }
                Meta::NameValue(nv) if nv.path.is_ident("cpu_bound") => {
                    return Err(syn::Error::new_spanned(
                        &meta,
                        "write `#[unsync(cpu_bound)]`: the option takes no value (Python's `cpu_bound=True`)",
                    ));
                }
                _ => {
                    let ident = meta.path().get_ident();
                    let name = ident.map_or_else(|| "this".to_owned(), |i| format!("`{i}`"));
                    let message = match ident.and_then(|i| closest(&i.to_string())) {
                        Some(known) => format!(
                            "unknown #[unsync] option {name}: did you mean `{known}`? Expected {OPTIONS}"
                        ),
                        None => format!("unknown #[unsync] option {name}: expected {OPTIONS}"),
                    };
                    return Err(syn::Error::new_spanned(&meta, message));
                }
            }
        }
        match &mut mode {
            Mode::Remote(options) => *options = remote,
            _ => {
                if let Some(option) = remote_options.first() {
                    let name = option.path.get_ident().map(ToString::to_string);
                    return Err(syn::Error::new_spanned(
                        option,
                        format!(
                            "`{}` applies to `#[unsync(remote)]` functions only: write `#[unsync(remote, {})]`, or remove it",
                            name.as_deref().unwrap_or("this option"),
                            option.to_token_stream(),
                        ),
                    ));
                }
            }
        }
        Ok(Options {
            mode,
            krate: krate.unwrap_or_else(Options::default_crate),
            buffer,
        })
    }

    pub(crate) fn default_crate() -> syn::Path {
        syn::parse_quote!(::unsync)
    }
}

const DURATION_FORMAT: &str = "write the timeout as a whole number and a unit, in quotes: `timeout = \"500ms\"`, `\"30s\"`, `\"10m\"` or `\"2h\"`";

/// `"500ms"`, `"30s"`, `"10m"`, `"2h"` in milliseconds; why not otherwise.
fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let digits = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (number, unit) = text.split_at(digits);
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "cannot read the timeout {text:?}: {DURATION_FORMAT}"
            ));
        }
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("cannot read the timeout {text:?}: {DURATION_FORMAT}"))?;
    match n.checked_mul(scale) {
        Some(0) => {
            Err("the timeout must be more than zero: a call needs some time to run".to_owned())
        }
        Some(ms) if ms <= MAX_TIMEOUT_MS => Ok(ms),
        _ => Err(format!(
            "the timeout {text:?} is too long: at most 10000 days"
        )),
    }
}

/// Ten thousand days: longer than any server keeps a call.
const MAX_TIMEOUT_MS: u64 = 10_000 * 24 * 3_600_000;

/// The option a misspelt one was probably meant to be: at most two edits away (a third of a
/// long name).
fn closest(written: &str) -> Option<&'static str> {
    [
        "parallel",
        "cpu_bound",
        "remote",
        "retries",
        "timeout",
        "crate",
        "buffer",
    ]
    .into_iter()
    .map(|known| (edit_distance(written, known), known))
    .filter(|&(distance, known)| distance <= 2.max(known.len() / 3))
    .min_by_key(|&(distance, _)| distance)
    .map(|(_, known)| known)
}

/// Levenshtein distance: insertions, deletions and substitutions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn durations_parse_in_every_unit_and_refuse_the_rest() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("10m"), Ok(600_000));
        assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
        for bad in ["30", "s", "1.5s", "-1s", "30 s", "30sec", ""] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
        assert!(
            parse_duration_ms("0s")
                .unwrap_err()
                .contains("more than zero")
        );
        assert!(
            parse_duration_ms("999999999h")
                .unwrap_err()
                .contains("too long")
        );
    }
}
