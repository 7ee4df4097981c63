// Package rollout answers "which machines run a hash that is not the approved one?":
// it reads fleet inventories in the formats operators already have and classifies
// every machine against a ledger channel into a replacement plan.
package rollout

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

// Instance is one machine (or container) and the image it runs.
type Instance struct {
	ID       string `json:"id"`
	Provider string `json:"provider,omitempty"` // aws, k8s, "" (csv)
	Region   string `json:"region,omitempty"`
	// Image is what the inventory says runs: an AMI id, "sha256:…", or "repo@sha256:…".
	// "" means the inventory could not tell (e.g. a pod still pulling).
	Image string `json:"image"`
	// Source names the file and record, for error messages and the plan.
	Source string `json:"-"`
}

// Formats lists the inventory formats.
var Formats = []string{"aws", "k8s", "csv"}

// ReadInventory parses "FORMAT:FILE" ("-" for stdin is not supported: inventories
// are files so errors can name them).
func ReadInventory(spec string) ([]Instance, error) {
	format, file, ok := strings.Cut(spec, ":")
	if !ok || file == "" {
		return nil, fmt.Errorf("inventory %q: want FORMAT:FILE with FORMAT one of %s (e.g. aws:instances.json)", spec, strings.Join(Formats, ", "))
	}
	known := false
	for _, f := range Formats {
		known = known || f == format
	}
	if !known {
		return nil, fmt.Errorf("inventory %q: unknown format %q: use one of %s", spec, format, strings.Join(Formats, ", "))
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %w", file, err)
	}
	return Parse(format, file, b)
}

// Parse parses inventory bytes of the given format; name is used in errors.
func Parse(format, name string, b []byte) ([]Instance, error) {
	switch format {
	case "aws":
		return ParseAWS(name, b)
	case "k8s":
		return ParseK8s(name, b)
	case "csv":
		return ParseCSV(name, b)
	}
	return nil, fmt.Errorf("inventory %s: unknown format %q: use one of %s", name, format, strings.Join(Formats, ", "))
}

// decodeStrict decodes one JSON document and refuses trailing data, so a truncated
// or concatenated file is an error rather than a partial inventory.
func decodeStrict(name string, b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF):
			return fmt.Errorf("inventory %s: empty file: expected a JSON document", name)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return fmt.Errorf("inventory %s: truncated JSON (unexpected end of file): re-export the inventory", name)
		case errors.As(err, &se):
			return fmt.Errorf("inventory %s: invalid JSON at byte %d: %v", name, se.Offset, err)
		case errors.As(err, &te):
			return fmt.Errorf("inventory %s: field %s: got JSON %s, want %s", name, te.Field, te.Value, te.Type)
		}
		return fmt.Errorf("inventory %s: %w", name, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("inventory %s: trailing data after the JSON document (two files concatenated?)", name)
	}
	return nil
}

type awsDoc struct {
	Reservations *[]struct {
		OwnerID   string `json:"OwnerId"`
		Instances *[]struct {
			InstanceID *string `json:"InstanceId"`
			ImageID    *string `json:"ImageId"`
			Placement  struct {
				AvailabilityZone string `json:"AvailabilityZone"`
			} `json:"Placement"`
			State struct {
				Name string `json:"Name"`
			} `json:"State"`
		} `json:"Instances"`
	} `json:"Reservations"`
}

var azRE = regexp.MustCompile(`^([a-z]{2}(-gov)?-[a-z]+-\d+)[a-z]$`)

// ParseAWS reads the JSON of `aws ec2 describe-instances`. Terminated instances are
// skipped (they run nothing).
func ParseAWS(name string, b []byte) ([]Instance, error) {
	var doc awsDoc
	if err := decodeStrict(name, b, &doc); err != nil {
		return nil, err
	}
	if doc.Reservations == nil {
		return nil, fmt.Errorf("inventory %s: no \"Reservations\" field: expected the output of `aws ec2 describe-instances --output json`", name)
	}
	var out []Instance
	for ri, r := range *doc.Reservations {
		if r.Instances == nil {
			return nil, fmt.Errorf("inventory %s: Reservations[%d]: no \"Instances\" field", name, ri)
		}
		for ii, in := range *r.Instances {
			where := fmt.Sprintf("%s: Reservations[%d].Instances[%d]", name, ri, ii)
			if in.InstanceID == nil || *in.InstanceID == "" {
				return nil, fmt.Errorf("inventory %s: missing InstanceId: re-export with the default describe-instances output (no --query)", where)
			}
			if in.ImageID == nil || *in.ImageID == "" {
				return nil, fmt.Errorf("inventory %s (%s): missing ImageId: re-export with the default describe-instances output (no --query)", where, *in.InstanceID)
			}
			if in.State.Name == "terminated" || in.State.Name == "shutting-down" {
				continue
			}
			region := ""
			if m := azRE.FindStringSubmatch(in.Placement.AvailabilityZone); m != nil {
				region = m[1]
			}
			out = append(out, Instance{ID: *in.InstanceID, Provider: "aws", Region: region, Image: *in.ImageID, Source: where})
		}
	}
	return out, nil
}

type k8sPod struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Status struct {
		Phase             string            `json:"phase"`
		ContainerStatuses []k8sContainerSts `json:"containerStatuses"`
	} `json:"status"`
}

type k8sContainerSts struct {
	Name    *string `json:"name"`
	Image   string  `json:"image"`
	ImageID *string `json:"imageID"`
}

var k8sDigestRE = regexp.MustCompile(`sha256:[0-9a-f]{64}$`)

// ParseK8s reads `kubectl get pods -o json` (a List of Pods, or one Pod). Each
// container is one instance "NAMESPACE/POD/CONTAINER"; its digest comes from
// status.containerStatuses[].imageID, which the runtime reports after pulling.
func ParseK8s(name string, b []byte) ([]Instance, error) {
	var doc struct {
		Kind  string    `json:"kind"`
		Items *[]k8sPod `json:"items"`
	}
	if err := decodeStrict(name, b, &doc); err != nil {
		return nil, err
	}
	var pods []k8sPod
	switch {
	case doc.Kind == "Pod":
		var p k8sPod
		if err := decodeStrict(name, b, &p); err != nil {
			return nil, err
		}
		pods = []k8sPod{p}
	case doc.Items != nil:
		pods = *doc.Items
	default:
		return nil, fmt.Errorf("inventory %s: neither a List with \"items\" nor a Pod: expected the output of `kubectl get pods -o json`", name)
	}
	var out []Instance
	for pi, p := range pods {
		where := fmt.Sprintf("%s: items[%d]", name, pi)
		if p.Kind != "" && p.Kind != "Pod" {
			return nil, fmt.Errorf("inventory %s: kind %q: only Pods are supported (use `kubectl get pods -o json`)", where, p.Kind)
		}
		if p.Metadata.Name == "" {
			return nil, fmt.Errorf("inventory %s: missing metadata.name", where)
		}
		ns := p.Metadata.Namespace
		if ns == "" {
			ns = "default"
		}
		if p.Status.Phase == "Succeeded" || p.Status.Phase == "Failed" {
			continue
		}
		if len(p.Status.ContainerStatuses) == 0 {
			// Scheduled but not started: nothing is known about what it will run.
			out = append(out, Instance{ID: ns + "/" + p.Metadata.Name, Provider: "k8s", Source: where})
			continue
		}
		for ci, c := range p.Status.ContainerStatuses {
			cw := fmt.Sprintf("%s.status.containerStatuses[%d]", where, ci)
			if c.Name == nil || *c.Name == "" {
				return nil, fmt.Errorf("inventory %s: missing name", cw)
			}
			if c.ImageID == nil {
				return nil, fmt.Errorf("inventory %s (%s/%s/%s): missing imageID: export with `kubectl get pods -o json` (not -o wide/yaml excerpts)", cw, ns, p.Metadata.Name, *c.Name)
			}
			img := ""
			if m := k8sDigestRE.FindString(*c.ImageID); m != "" {
				img = m
			} else if m := k8sDigestRE.FindString(c.Image); m != "" {
				img = m
			}
			out = append(out, Instance{ID: ns + "/" + p.Metadata.Name + "/" + *c.Name, Provider: "k8s", Image: img, Source: cw})
		}
	}
	return out, nil
}

// ParseCSV reads "id,image" rows; a first row "id,image" is a header. Blank lines and
// lines starting with # are skipped.
func ParseCSV(name string, b []byte) ([]Instance, error) {
	r := csv.NewReader(bytes.NewReader(b))
	r.Comment = '#'
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	var out []Instance
	for row := 0; ; row++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("inventory %s: %w", name, err)
		}
		line, _ := r.FieldPos(0)
		if row == 0 && len(rec) >= 2 && strings.EqualFold(rec[0], "id") && strings.EqualFold(rec[1], "image") {
			continue
		}
		if len(rec) != 2 {
			return nil, fmt.Errorf("inventory %s:%d: %d fields, want 2 (id,image)", name, line, len(rec))
		}
		id, img := strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1])
		if id == "" {
			return nil, fmt.Errorf("inventory %s:%d: empty id", name, line)
		}
		if img == "" {
			return nil, fmt.Errorf("inventory %s:%d (%s): empty image: give an AMI id, sha256:… or repo@sha256:…", name, line, id)
		}
		out = append(out, Instance{ID: id, Image: img, Source: fmt.Sprintf("%s:%d", name, line)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("inventory %s: no rows: want lines of id,image", name)
	}
	return out, nil
}
