//! nginx's configuration as a tree of directives, read from the host with its `include`s
//! spliced in (relative includes are relative to the main file's directory, as nginx does).

use super::include_files;
use crate::transport::Transport;

/// Includes nested deeper than this are not followed (nginx itself would loop forever).
const MAX_INCLUDE_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    /// Where it is written.
    pub file: String,
    pub line: usize,
    /// The directives inside `{ ... }`, for a block directive.
    pub block: Option<Vec<Directive>>,
}

impl Directive {
    /// `file:line`.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    pub fn children(&self) -> &[Directive] {
        self.block.as_deref().unwrap_or_default()
    }
}

/// The config at `path` with every include spliced in; `Ok(None)` when `path` does not exist.
/// Included files that do not exist are skipped.
pub fn load(transport: &dyn Transport, path: &str) -> Result<Option<Vec<Directive>>, String> {
    let Some(text) = transport.read_file(path).map_err(|e| format!("{e:#}"))? else {
        return Ok(None);
    };
    let base = path.rsplit_once('/').map(|(dir, _)| dir).unwrap_or(".");
    let base = if base.is_empty() { "/" } else { base };
    let directives = parse(&text, path)?;
    Ok(Some(splice(transport, directives, base, 0)?))
}

fn splice(
    transport: &dyn Transport,
    directives: Vec<Directive>,
    base: &str,
    depth: usize,
) -> Result<Vec<Directive>, String> {
    let mut out = Vec::with_capacity(directives.len());
    for mut directive in directives {
        if directive.name == "include" && directive.block.is_none() && depth < MAX_INCLUDE_DEPTH {
            for pattern in &directive.args {
                let files = include_files::expand(transport, pattern, base)
                    .map_err(|e| format!("{e:#}"))?;
                for file in files {
                    let Some(text) = transport.read_file(&file).map_err(|e| format!("{e:#}"))?
                    else {
                        continue;
                    };
                    let included = parse(&text, &file)?;
                    out.extend(splice(transport, included, base, depth + 1)?);
                }
            }
            continue;
        }
        if let Some(block) = directive.block.take() {
            directive.block = Some(splice(transport, block, base, depth)?);
        }
        out.push(directive);
    }
    Ok(out)
}

/// One file's directives (includes not followed). `file` names it in errors and locations.
pub fn parse(text: &str, file: &str) -> Result<Vec<Directive>, String> {
    let tokens = tokenize(text, file)?;
    let mut position = 0;
    let directives = parse_block(&tokens, &mut position, file, false)?;
    Ok(directives)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String, usize),
    Open(usize),
    Close(usize),
    End(usize),
}

fn parse_block(
    tokens: &[Token],
    position: &mut usize,
    file: &str,
    nested: bool,
) -> Result<Vec<Directive>, String> {
    let mut directives = Vec::new();
    let mut words: Vec<(String, usize)> = Vec::new();
    while let Some(token) = tokens.get(*position) {
        *position += 1;
        match token {
            Token::Word(word, line) => words.push((word.clone(), *line)),
            Token::End(line) => {
                let Some(directive) = directive(&mut words, file, None) else {
                    return Err(format!("{file}:{line}: unexpected `;`"));
                };
                directives.push(directive);
            }
            Token::Open(line) => {
                if words.is_empty() {
                    return Err(format!("{file}:{line}: unexpected `{{`"));
                }
                let block = parse_block(tokens, position, file, true)?;
                if let Some(directive) = directive(&mut words, file, Some(block)) {
                    directives.push(directive);
                }
            }
            Token::Close(line) => {
                if !nested || !words.is_empty() {
                    return Err(format!("{file}:{line}: unexpected `}}`"));
                }
                return Ok(directives);
            }
        }
    }
    if nested {
        return Err(format!("{file}: a `{{` is never closed"));
    }
    if let Some((word, line)) = words.first() {
        return Err(format!("{file}:{line}: `{word}` has no `;`"));
    }
    Ok(directives)
}

fn directive(
    words: &mut Vec<(String, usize)>,
    file: &str,
    block: Option<Vec<Directive>>,
) -> Option<Directive> {
    let mut taken = std::mem::take(words).into_iter();
    let (name, line) = taken.next()?;
    Some(Directive {
        name,
        args: taken.map(|(word, _)| word).collect(),
        file: file.to_string(),
        line,
        block,
    })
}

fn tokenize(text: &str, file: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut word = String::new();
    let mut word_line = 1;
    // Inside `${name}`, braces belong to the word.
    let mut in_variable = false;
    let flush = |word: &mut String, tokens: &mut Vec<Token>, line: usize| {
        if !word.is_empty() {
            tokens.push(Token::Word(std::mem::take(word), line));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\n' | ' ' | '\t' | '\r' => {
                flush(&mut word, &mut tokens, word_line);
                if c == '\n' {
                    line += 1;
                }
            }
            '#' if word.is_empty() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '"' | '\'' if word.is_empty() => {
                let quote = c;
                word_line = line;
                let mut value = String::new();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(next) = chars.next() {
                                if next == '\n' {
                                    line += 1;
                                }
                                if next != quote && next != '\\' {
                                    value.push('\\');
                                }
                                value.push(next);
                            }
                        }
                        c if c == quote => {
                            closed = true;
                            break;
                        }
                        c => {
                            if c == '\n' {
                                line += 1;
                            }
                            value.push(c);
                        }
                    }
                }
                if !closed {
                    return Err(format!("{file}:{word_line}: a quote is never closed"));
                }
                tokens.push(Token::Word(value, word_line));
            }
            '{' if word.ends_with('$') => {
                in_variable = true;
                word.push(c);
            }
            '}' if in_variable => {
                in_variable = false;
                word.push(c);
            }
            '{' | '}' | ';' => {
                flush(&mut word, &mut tokens, word_line);
                tokens.push(match c {
                    '{' => Token::Open(line),
                    '}' => Token::Close(line),
                    _ => Token::End(line),
                });
            }
            '\\' => {
                if word.is_empty() {
                    word_line = line;
                }
                word.push(c);
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            c => {
                if word.is_empty() {
                    word_line = line;
                }
                word.push(c);
            }
        }
    }
    flush(&mut word, &mut tokens, word_line);
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_blocks_quotes_variables_and_comments() {
        let text = "http {\n  # a comment; with { braces\n  log_format x '$a \"b\"'\n    \"c\";\n  server {\n    root /srv/${app}/current;\n    location ~ \\.php$ { fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name; }\n  }\n}\n";
        let parsed = parse(text, "n.conf").unwrap();
        assert_eq!(parsed.len(), 1);
        let http = &parsed[0];
        assert_eq!(http.name, "http");
        let log_format = &http.children()[0];
        assert_eq!(log_format.args, vec!["x", "$a \"b\"", "c"]);
        assert_eq!(log_format.line, 3);
        let server = &http.children()[1];
        assert_eq!(server.children()[0].args, vec!["/srv/${app}/current"]);
        let location = &server.children()[1];
        assert_eq!(location.args, vec!["~", "\\.php$"]);
        assert_eq!(location.line, 7);
        assert_eq!(
            location.children()[0].args,
            vec!["SCRIPT_FILENAME", "$realpath_root$fastcgi_script_name"]
        );
        assert_eq!(location.children()[0].location(), "n.conf:7");
    }

    #[test]
    fn unbalanced_braces_are_errors() {
        assert_eq!(
            parse("http {\n", "n.conf").unwrap_err(),
            "n.conf: a `{` is never closed"
        );
        assert_eq!(
            parse("}\n", "n.conf").unwrap_err(),
            "n.conf:1: unexpected `}`"
        );
    }
}
