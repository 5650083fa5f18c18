package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestCompletion checks that `stead completion SHELL` writes a script for
// every shell cobra supports, and that the script completes stead.
func TestCompletion(t *testing.T) {
	tests := []struct {
		shell string
		// want is a line that only a script for this shell holds.
		want string
	}{
		{"bash", "complete -o default -F __start_stead stead"},
		{"zsh", "#compdef stead"},
		{"fish", "complete -c stead "},
		{"powershell", "Register-ArgumentCompleter -CommandName 'stead'"},
	}
	for _, tt := range tests {
		t.Run(tt.shell, func(t *testing.T) {
			root := newRootCmd()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetArgs([]string{"completion", tt.shell})
			if err := root.Execute(); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), tt.want) {
				t.Errorf("the %s script does not hold %q:\n%.400s", tt.shell, tt.want, out.String())
			}
		})
	}

	// The completion of a verb's arguments goes through the hidden
	// __complete command, which must not trip over settings.
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&bytes.Buffer{})
	root.SetArgs([]string{cobra.ShellCompRequestCmd, "operator", "snapshot", ""})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"inspect", "restore", "save"} {
		if !strings.Contains(out.String(), verb) {
			t.Errorf("completing 'stead operator snapshot' does not offer %s:\n%s", verb, out.String())
		}
	}
}

// missingExamples are the commands that have no examples yet: each is
// to be given examples, and then removed from this list.
var missingExamples = []string{
	"stead image ls", // image.go: to be given examples
}

// TestEveryCommandHasExamples requires an Example in the --help of every
// command that runs (cobra's help and completion aside).
func TestEveryCommandHasExamples(t *testing.T) {
	var missing []string
	walk(newRootCmd(), func(c *cobra.Command) {
		if !c.Runnable() || c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		if strings.TrimSpace(c.Example) == "" {
			missing = append(missing, c.CommandPath())
		}
	})
	for _, path := range missing {
		if !slices.Contains(missingExamples, path) {
			t.Errorf("'%s --help' shows no examples: set Example", path)
		}
	}
	for _, path := range missingExamples {
		if !slices.Contains(missing, path) {
			t.Errorf("%q has examples (or is gone): remove it from missingExamples", path)
		}
	}
}
