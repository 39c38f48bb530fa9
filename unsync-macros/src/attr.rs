//! The options inside `#[unsync(...)]`.

use proc_macro2::TokenStream;
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
}

pub(crate) struct Options {
    pub(crate) mode: Mode,
    /// Path to the facade crate (`::unsync` unless renamed with `crate = "..."`).
    pub(crate) krate: syn::Path,
    /// `buffer = N`: how far a streaming function's producer may run ahead, and the option
    /// itself (for errors).
    pub(crate) buffer: Option<(usize, syn::MetaNameValue)>,
}

const OPTIONS: &str = "`parallel`, `cpu_bound`, `buffer = N` (streaming functions), or `crate = \"path\"` (for example `#[unsync]`, `#[unsync(parallel)]`, `#[unsync(cpu_bound)]`)";

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
        for meta in metas {
            match &meta {
                Meta::Path(path) if path.is_ident("parallel") || path.is_ident("cpu_bound") => {
                    if !matches!(mode, Mode::Default) {
                        return Err(syn::Error::new_spanned(
                            path,
                            "choose one of `parallel` (rayon threads in this process) and `cpu_bound` (worker processes)",
                        ));
                    }
                    mode = if path.is_ident("parallel") {
                        Mode::Parallel
                    } else {
                        Mode::CpuBound
                    };
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

/// The option a misspelt one was probably meant to be: at most two edits away (a third of a
/// long name).
fn closest(written: &str) -> Option<&'static str> {
    ["parallel", "cpu_bound", "crate", "buffer"]
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
