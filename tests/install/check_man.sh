#!/bin/sh
# The man pages and the example config against what the programs and the
# code say, so that neither can drift from the other:
#
#   - every option in 'sockid-agent --help' is in sockid-agent(8);
#   - every command and subcommand of 'sockid' (found by walking the
#     "Commands:" lists of the --help texts, so new ones are covered without
#     touching this script) has a section '.SS "sockid CMD [SUB]"' in
#     sockid(1), and every option of its --help is in that section (options
#     that 'sockid --help' lists as global in the GLOBAL OPTIONS section);
#   - every [agent] key of agent/config.c's table has an entry in
#     sockid-agent.conf(5) that shows its default (from config_new) and, for
#     numbers, its range (the table's min and max); so does every key the
#     shipped attestor plugins accept ("known keys: ..." in their sources,
#     plus "required");
#   - examples/agent.conf has a line for every key, showing the same default;
#   - groff renders each page without a warning.
#
# Usage: check_man.sh SOURCE_DIR AGENT SOCKID
set -u
[ $# -eq 3 ] || {
    echo "usage: $0 SOURCE_DIR AGENT SOCKID" >&2
    exit 2
}
SRC=$1
AGENT=$2
SOCKID=$3
FAILED=0
TMP=$(mktemp -d /tmp/sockid-man.XXXXXX) || exit 1
trap 'rm -rf "$TMP"' EXIT
trap 'exit 1' INT TERM HUP

fail() {
    echo "FAIL: $*" >&2
    FAILED=1
}

# plain MANPAGE > FILE: the roff source with fonts, escapes and hyphens
# undone, so that '\-\-json' and '\fB\-\-json\fR' both read '--json'.
plain() {
    sed -e 's/\\f[BIRP]//g' -e 's/\\f(..//g' -e 's/\\&//g' -e 's/\\-/-/g' \
        -e 's/\\(em/--/g' -e 's/\\(en/-/g' -e 's/\\e/\\/g' -e 's/\\ / /g' "$1"
}

# section FILE TITLE: the lines of FILE's section '.SS "TITLE"' or
# '.SH "TITLE"' (quoted or not), up to the next .SS or .SH.
section() {
    awk -v want="$2" '
        /^\.S[SH] / {
            t = $0
            sub(/^\.S[SH] +/, "", t)
            gsub(/"/, "", t)
            on = (t == want)
            next
        }
        on { print }
    ' "$1"
}

# help_options: the options named on the option lines of a --help text on
# stdin (lines whose first word is an option), one per line.
help_options() {
    grep -E '^ +(-[A-Za-z], )?--[a-z]' | sed -E 's/^ +(-[A-Za-z], )?(--[a-z][a-z0-9-]*).*/\2/' |
        sort -u
}

# help_short_options: "-c" of "  -c, --config PATH".
help_short_options() {
    grep -E '^ +-[A-Za-z], --' | sed -E 's/^ +(-[A-Za-z]),.*/\1/' | sort -u
}

# help_commands: the names listed under "Commands:" in a --help text.
help_commands() {
    awk '/^Commands:/ { on = 1; next } on && /^$/ { on = 0 } on && /^  [a-z]/ { print $1 }'
}

# has_option TEXT_FILE OPTION: the option appears as a word.
has_option() {
    grep -Eq -- "(^|[^A-Za-z0-9-])$2([^A-Za-z0-9-]|\$)" "$1"
}

for page in sockid-agent.8 sockid.1 sockid-agent.conf.5; do
    [ -f "$SRC/man/$page" ] || {
        echo "FAIL: $SRC/man/$page is missing" >&2
        exit 1
    }
    plain "$SRC/man/$page" >"$TMP/$page"
done

# Each page renders without a warning from groff (bad macros, escapes,
# fonts), and to something: man(1) shows what groff makes of it.
if command -v groff >/dev/null 2>&1; then
    for page in sockid-agent.8 sockid.1 sockid-agent.conf.5; do
        warnings=$(groff -man -ww -z -Tutf8 "$SRC/man/$page" 2>&1)
        [ -z "$warnings" ] || fail "groff warns about man/$page: $warnings"
        lines=$(groff -man -Tutf8 "$SRC/man/$page" 2>/dev/null | wc -l)
        [ "$lines" -gt 40 ] || fail "man/$page renders to only $lines lines"
    done
else
    echo "SKIP (part): groff is missing (Debian package groff-base): rendering not checked"
fi

# --- sockid-agent(8) -------------------------------------------------------
"$AGENT" --help >"$TMP/agent.help" 2>&1 || fail "sockid-agent --help exited with status $?"
n=0
for opt in $(help_options <"$TMP/agent.help") $(help_short_options <"$TMP/agent.help"); do
    n=$((n + 1))
    section "$TMP/sockid-agent.8" OPTIONS >"$TMP/agent.options"
    has_option "$TMP/agent.options" "$opt" ||
        fail "sockid-agent --help has $opt, but the OPTIONS section of man/sockid-agent.8 does not"
done
[ $n -ge 5 ] || fail "found only $n options in sockid-agent --help; is the parser out of date?"
echo "sockid-agent(8): $n options checked"

# --- sockid(1) -------------------------------------------------------------
"$SOCKID" --help >"$TMP/sockid.help" 2>&1 || fail "sockid --help exited with status $?"
help_options <"$TMP/sockid.help" >"$TMP/global.options"
section "$TMP/sockid.1" "GLOBAL OPTIONS" >"$TMP/sockid.global"
[ -s "$TMP/sockid.global" ] || fail "man/sockid.1 has no GLOBAL OPTIONS section"
for opt in $(cat "$TMP/global.options"); do
    has_option "$TMP/sockid.global" "$opt" ||
        fail "sockid --help has the global option $opt, but GLOBAL OPTIONS in man/sockid.1 does not"
done

# check_command "CMD [SUB]": its section, and each of its options there.
checked=0
check_command() {
    title="sockid $1"
    # shellcheck disable=SC2086 # $1 is "CMD" or "CMD SUB": two words on purpose
    if ! "$SOCKID" $1 --help >"$TMP/cmd.help" 2>&1; then
        fail "'$title --help' exited with status $?"
        return
    fi
    section "$TMP/sockid.1" "$title" >"$TMP/cmd.man"
    if [ ! -s "$TMP/cmd.man" ]; then
        fail "man/sockid.1 has no section .SS \"$title\""
        return
    fi
    checked=$((checked + 1))
    grep -q "^Usage: $title" "$TMP/cmd.help" ||
        fail "'$title --help' does not start with 'Usage: $title'"
    for opt in $(help_options <"$TMP/cmd.help"); do
        # Global options are documented once, under GLOBAL OPTIONS.
        grep -qx -- "$opt" "$TMP/global.options" && continue
        has_option "$TMP/cmd.man" "$opt" ||
            fail "'$title --help' has $opt, but the section \"$title\" of man/sockid.1 does not"
    done
    for sub in $(help_commands <"$TMP/cmd.help"); do
        check_command "$1 $sub"
    done
}

commands=$(help_commands <"$TMP/sockid.help")
[ -n "$commands" ] || fail "found no commands in sockid --help"
for cmd in $commands; do
    check_command "$cmd"
done
# No section for a command that does not exist (a stale page).
grep -E '^\.SS +"?sockid [a-z]' "$SRC/man/sockid.1" | sed -E 's/^\.SS +"?//; s/"$//' |
    while read -r title; do
        # shellcheck disable=SC2086
        set -- $title
        shift
        # shellcheck disable=SC2068
        "$SOCKID" $@ --help >/dev/null 2>&1 ||
            echo "FAIL: man/sockid.1 has a section \"$title\", but '$title --help' fails" >&2
    done >"$TMP/stale"
if [ -s "$TMP/stale" ]; then
    cat "$TMP/stale" >&2
    FAILED=1
fi
echo "sockid(1): $checked commands and subcommands checked"

# --- sockid-agent.conf(5) and examples/agent.conf ---------------------------
CONFIG_C=$SRC/agent/config.c
EXAMPLE=$SRC/examples/agent.conf
[ -f "$EXAMPLE" ] || fail "$EXAMPLE is missing"

# The table: 'CONFIG_KEY("name", CONFIG_KIND_X, field, min, max),' ->
# "name kind field min max".
tr -d '\n' <"$CONFIG_C" |
    grep -o 'CONFIG_KEY("[a-z_]*", *CONFIG_KIND_[A-Z0-9_]*, *[a-z_]*, *[0-9]*, *[0-9]*)' |
    sed -E 's/CONFIG_KEY\("([a-z_]+)", *CONFIG_KIND_([A-Z0-9_]+), *([a-z_]+), *([0-9]+), *([0-9]+)\)/\1 \2 \3 \4 \5/' \
        >"$TMP/keys"
nkeys=$(wc -l <"$TMP/keys")
ntable=$(grep -c 'CONFIG_KEY("' "$CONFIG_C")
[ "$nkeys" -ge 10 ] && [ "$nkeys" = "$ntable" ] ||
    fail "read $nkeys of the $ntable CONFIG_KEY lines of $CONFIG_C; is this script's parser out of date?"

# Defaults: 'cfg->field = value;' in config_new(), as the text a reader
# sees: strdup("x") -> x, LOG_FORMAT_TEXT -> text.
awk '/^int config_new\(/ { on = 1 } on && /^}/ { on = 0 } on' "$CONFIG_C" |
    grep -E '^ *cfg->[a-z_]+ = ' | sed -E 's/^ *cfg->([a-z_]+) = (.*);.*/\1 \2/' |
    sed -E 's/strdup\("(.*)"\)/\1/; s/LOG_FORMAT_TEXT/text/; s/LOG_FORMAT_JSON/json/' \
        >"$TMP/defaults"

# entry FILE KEY: the text of KEY's .TP entry in a plain man page.
entry() {
    awk -v key="$2" '
        /^\.(TP|SH|SS|PP|P|LP)( |$)/ { if (on) exit; tp = ($1 == ".TP"); next }
        tp { tag = $0; sub(/^\.B[IR]? +/, "", tag); sub(/[ ,].*/, "", tag); gsub(/"/, "", tag)
             if (tag == key) { on = 1; print; tp = 0; next } tp = 0 }
        on { print }
    ' "$1"
}

while read -r key kind field min max; do
    entry "$TMP/sockid-agent.conf.5" "$key" >"$TMP/entry"
    if [ ! -s "$TMP/entry" ]; then
        fail "config key '$key' ($CONFIG_C) has no .TP entry in man/sockid-agent.conf.5"
        continue
    fi
    def=$(awk -v f="$field" '$1 == f { $1 = ""; sub(/^ /, ""); print }' "$TMP/defaults")
    if [ -n "$def" ]; then
        grep -qF -- "$def" "$TMP/entry" ||
            fail "man/sockid-agent.conf.5: the entry of '$key' does not show its default '$def'"
    fi
    case $kind in
    U32 | DURATION)
        for v in "$min" "$max"; do
            grep -Eq "(^|[^0-9])$v([^0-9]|\$)" "$TMP/entry" ||
                fail "man/sockid-agent.conf.5: the entry of '$key' does not show its range ($min to $max)"
        done
        ;;
    esac
    # The example config: '; key = default' (or uncommented).
    line=$(grep -E "^[;#]? *$key *=" "$EXAMPLE" | head -n 1)
    if [ -z "$line" ]; then
        fail "examples/agent.conf has no line for '$key'"
    elif [ -n "$def" ]; then
        value=$(printf '%s\n' "$line" | sed -E 's/^[;#]? *[a-z_]+ *= *//; s/ +[;#].*//')
        [ "$value" = "$def" ] ||
            fail "examples/agent.conf shows '$key = $value', but the default is '$def'"
    fi
done <"$TMP/keys"
echo "sockid-agent.conf(5), examples/agent.conf: $nkeys [agent] keys checked"

# Attestor keys: "required" for every plugin, and those each plugin lists.
n=0
for key in required $(grep -ho 'known keys: [a-z0-9_, ]*' "$SRC"/attestors/*/*.c |
    sed 's/known keys: //; s/,/ /g'); do
    n=$((n + 1))
    entry "$TMP/sockid-agent.conf.5" "$key" >"$TMP/entry"
    [ -s "$TMP/entry" ] || fail "attestor key '$key' has no .TP entry in man/sockid-agent.conf.5"
    grep -Eq "^[;#]? *$key *=" "$EXAMPLE" || fail "examples/agent.conf has no line for '$key'"
done
echo "sockid-agent.conf(5), examples/agent.conf: $n attestor keys checked"

if [ "$FAILED" != 0 ]; then
    echo "FAIL: the man pages or the example config do not match the code (above)" >&2
    exit 1
fi
echo "PASS: the man pages and examples/agent.conf match the --help texts and the config table"
