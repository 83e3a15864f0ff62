// Test fixture standing in for Ollama's prompt templating, which the tests cannot install (its releases come from
// GitHub): it renders a Modelfile's TEMPLATE with Go's text/template, the engine Ollama uses, over the values Ollama
// gives a chat request's template: the Modelfile's SYSTEM first as a system message when the request has none, then
// every system message collected into .System and consecutive messages of one role merged into one (Ollama's
// template.go, collate). It reads {"template", "system", "messages"} as JSON on stdin and prints the prompt.
package main

import (
	"encoding/json"
	"os"
	"strings"
	"text/template"
)

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type request struct {
	Template string    `json:"template"`
	System   string    `json:"system"`
	Messages []message `json:"messages"`
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		panic(err)
	}
	msgs := req.Messages
	if req.System != "" && (len(msgs) == 0 || msgs[0].Role != "system") {
		msgs = append([]message{{Role: "system", Content: req.System}}, msgs...)
	}
	var system []string
	var collated []*message
	for i := range msgs {
		if msgs[i].Role == "system" {
			system = append(system, msgs[i].Content)
		}
		if n := len(collated); n > 0 && collated[n-1].Role == msgs[i].Role {
			collated[n-1].Content += "\n\n" + msgs[i].Content
		} else {
			m := msgs[i]
			collated = append(collated, &m)
		}
	}
	tmpl := template.Must(template.New("").Parse(req.Template))
	values := map[string]any{"System": strings.Join(system, "\n\n"), "Messages": collated}
	if err := tmpl.Execute(os.Stdout, values); err != nil {
		panic(err)
	}
}
