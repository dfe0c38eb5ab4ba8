//! The command line, as clap reads it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::system::environment;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the deploy failed (nothing was switched, or it was switched back)
  2  usage or recipe error (nothing ran)
  3  the deploy is locked by someone else
  4  deployed with exceptions: hosts left behind on their old release (within `max_fail`),
     each named";

#[derive(Debug, Parser)]
#[command(
    name = "zdd",
    version,
    about = "Zero-downtime deploys driven by Rhai recipes",
    after_help = EXIT_CODES,
    propagate_version = true
)]
pub struct Arguments {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a task of the recipe (`deploy` unless named)
    Run {
        /// The recipe file
        recipe: PathBuf,
        /// The task to run
        #[arg(default_value = "deploy")]
        task: String,
        /// Print the ordered steps per host and run nothing
        #[arg(long)]
        plan: bool,
        /// Request URL during the deploy and report what users got (repeatable; replaces the
        /// `watch` setting)
        #[arg(long = "watch", value_name = "URL")]
        watch: Vec<String>,
        /// Wait up to DURATION (`90`, `30s`, `5m`) for a deploy lock another run holds,
        /// instead of exit 3 (the `lock_wait` setting)
        #[arg(long = "lock-wait", value_name = "DURATION")]
        lock_wait: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Switch `current` back to the previous good release
    Rollback {
        recipe: PathBuf,
        /// Roll back to this release instead of the previous one
        #[arg(long, value_name = "RELEASE")]
        to: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// List the releases on each host, with their status and which one is current
    Releases {
        recipe: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Draw a deploy as one HTML page: each host's tasks on a timeline, the swaps, and what
    /// the watcher saw; prints the page's path
    Report {
        recipe: PathBuf,
        /// The release to draw (the last deploy unless named)
        release: Option<String>,
        /// Where to write the page (default: zdd-report-RELEASE.html in the current directory)
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// List the hosts, their roles and the settings each gets, and where each came from
    Hosts {
        recipe: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// List the recipe's tasks with their descriptions
    Tasks {
        recipe: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Compile and validate the recipe; touches no host
    Check {
        recipe: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Remove the deploy lock, whoever holds it
    Unlock {
        recipe: PathBuf,
        /// Remove the lock even when its holder is a zdd run of this machine that is still
        /// going (it will then run unguarded)
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Pin the shared recipes a recipe imports by branch or tag, in `zdd.lock` beside it
    Recipes {
        #[command(subcommand)]
        command: RecipesCommand,
    },
    /// Check, per host, what zero downtime needs (nginx, php-fpm, OPcache, shared files,
    /// writable dirs, disk, lock, SSH) and say how to fix it; changes nothing. Exits 1 when
    /// any check finds a problem
    Doctor {
        recipe: PathBuf,
        #[command(flatten)]
        common: Common,
    },
}

/// `zdd recipes ...`: the lock file of shared recipes (`import "git+URL@REF/NAME"`).
#[derive(Debug, Subcommand)]
pub enum RecipesCommand {
    /// Pin each branch or tag import that `zdd.lock` lacks to the commit it names now
    /// (fetched), and write the lock file; pinned ones stay as they are
    Lock {
        recipe: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Move the pinned imports (all, or NAME's) to the commit their branch or tag names now,
    /// and print the diff of the recipe files they bring in
    Update {
        recipe: PathBuf,
        /// A repository's name (`recipes` for `.../recipes.git`) or URL
        name: Option<String>,
        #[command(flatten)]
        common: Common,
    },
}

/// Options every subcommand takes.
#[derive(Debug, Args, Clone, Default)]
pub struct Common {
    /// Set a configuration value, overriding the recipe (true/false, integers and a,b,c lists
    /// are parsed as such)
    #[arg(short = 'o', long = "option", value_name = "KEY=VALUE")]
    pub options: Vec<String>,
    /// Take the hosts from this inventory instead of the recipe's (Ansible INI or YAML, the
    /// JSON of `ansible-inventory --list`, Deployer's hosts.yml; `!COMMAND` runs a dynamic
    /// inventory). Repeatable
    #[arg(short = 'i', long = "inventory", value_name = "INVENTORY")]
    pub inventory: Vec<String>,
    /// Only these hosts (comma separated)
    #[arg(long, value_delimiter = ',', env = environment::HOSTS)]
    pub hosts: Vec<String>,
    /// Only hosts with these roles (comma separated)
    #[arg(long, value_delimiter = ',', env = environment::ROLES)]
    pub roles: Vec<String>,
    /// More output: -v shows commands, -vv their output too
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors
    #[arg(short, long, env = environment::QUIET, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Machine-readable output on stdout: one JSON object per line
    #[arg(long, env = environment::JSON)]
    pub json: bool,
    /// Never fetch a shared recipe: an import the recipe cache lacks is an error
    #[arg(long, env = environment::OFFLINE)]
    pub offline: bool,
}
