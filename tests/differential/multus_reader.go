// multus_reader reads Multus's networks annotations the way Multus does, for the differential
// tests of gpu-rdma-injector's parser. It is written for these tests from the rules Multus
// documents and follows (multus-cni pkg/k8sclient: parsePodNetworkAnnotation,
// parsePodNetworkObjectName, tryLoadK8sPodDefaultNetwork; pkg/types: NetworkSelectionElement;
// containernetworking/cni libcni: interface names), using only Go's standard library, so Go's
// own encoding/json and net packages decide what parses.
//
// Input: one JSON object per line, {"value": "...", "namespace": "...", "mode": "networks" or
// "default"} (mode "fold" lists the non-ASCII runes Go's case folding matches with ASCII). Output: one JSON object per line, {"ok": true, "entries": [...]} or
// {"ok": false, "error": "..."}.
//
// On top of Multus's own parse it refuses what then cannot run (a NAD name no NAD can have,
// an interface libcni refuses, a null entry Multus crashes on) and the webhook's own bounds;
// gpu-rdma-injector must agree on every one of them.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"unicode"
)

// The webhook's own bounds (webhook/networks.py).
const (
	maxAttachments = 256
	maxListItems   = 16
	maxJSONDepth   = 32
	maxBrackets    = 1024 // '[' and '{' characters in the JSON text, strings included
	maxCNIArgs     = 16   // values inside one entry's cni-args, nested ones included
)

type portMapEntry struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"`
	HostIP        string `json:"hostIP,omitempty"`
}

type bandwidthEntry struct {
	IngressRate  int `json:"ingressRate"`
	IngressBurst int `json:"ingressBurst"`
	EgressRate   int `json:"egressRate"`
	EgressBurst  int `json:"egressBurst"`
}

// selection has the fields and json tags of Multus's NetworkSelectionElement.
type selection struct {
	Name                       string                  `json:"name"`
	Namespace                  string                  `json:"namespace,omitempty"`
	IPRequest                  []string                `json:"ips,omitempty"`
	MacRequest                 string                  `json:"mac,omitempty"`
	InfinibandGUIDRequest      string                  `json:"infiniband-guid,omitempty"`
	InterfaceRequest           string                  `json:"interface,omitempty"`
	DeprecatedInterfaceRequest string                  `json:"interfaceRequest,omitempty"`
	PortMappingsRequest        []*portMapEntry         `json:"portMappings,omitempty"`
	BandwidthRequest           *bandwidthEntry         `json:"bandwidth,omitempty"`
	DeviceID                   string                  `json:"deviceID,omitempty"`
	CNIArgs                    *map[string]interface{} `json:"cni-args"`
	GatewayRequest             *[]net.IP               `json:"default-route,omitempty"`
}

type request struct {
	Value     string `json:"value"`
	Namespace string `json:"namespace"`
	Mode      string `json:"mode"`
}

type entry struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Interface string    `json:"interface"`
	IPs       *[]string `json:"ips"`
	MAC       string    `json:"mac"`
	GUID      string    `json:"guid"`
	DeviceID  string    `json:"deviceID"`
	Routes    *[]string `json:"routes"`
}

type answer struct {
	OK      bool    `json:"ok"`
	Error   string  `json:"error,omitempty"`
	Entries []entry `json:"entries,omitempty"`
}

var (
	label     = regexp.MustCompile("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
	subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// objectName splits one comma-form item: [namespace/]name[@interface].
func objectName(item string) (string, string, string, error) {
	var namespace, name, ifname string
	slash := strings.Split(item, "/")
	switch len(slash) {
	case 1:
		name = slash[0]
	case 2:
		namespace = strings.TrimSpace(slash[0])
		name = slash[1]
	default:
		return "", "", "", errors.New("more than one '/'")
	}
	at := strings.Split(name, "@")
	name = strings.TrimSpace(at[0])
	switch len(at) {
	case 1:
	case 2:
		ifname = strings.TrimSpace(at[1])
	default:
		return "", "", "", errors.New("more than one '@'")
	}
	for _, part := range []string{namespace, name} {
		if len(part) > 0 && !label.MatchString(part) {
			return "", "", "", fmt.Errorf("%q is not a DNS-1123 label", part)
		}
	}
	if len(ifname) > 0 && (len(ifname) > 15 || strings.ContainsAny(ifname, " \t\n\v\f\r/")) {
		return "", "", "", fmt.Errorf("interface %q", ifname)
	}
	return namespace, name, ifname, nil
}

// parse is Multus's reading of the annotation: the list of selections, namespaces defaulted.
func parse(value, defaultNamespace string) ([]*selection, error) {
	var networks []*selection
	if value == "" {
		return nil, errors.New("empty annotation")
	}
	if strings.ContainsAny(value, "[{\"") {
		if err := json.Unmarshal([]byte(value), &networks); err != nil {
			return nil, err
		}
	} else {
		for _, item := range strings.Split(value, ",") {
			namespace, name, ifname, err := objectName(strings.TrimSpace(item))
			if err != nil {
				return nil, err
			}
			networks = append(networks, &selection{Name: name, Namespace: namespace, InterfaceRequest: ifname})
		}
	}
	for _, n := range networks {
		if n == nil {
			return nil, errors.New("null entry: Multus dereferences it and crashes")
		}
		if n.Namespace == "" {
			n.Namespace = defaultNamespace
		}
		if n.MacRequest != "" {
			if _, err := net.ParseMAC(n.MacRequest); err != nil {
				return nil, err
			}
		}
		if n.InfinibandGUIDRequest != "" {
			if _, err := net.ParseMAC(n.InfinibandGUIDRequest); err != nil {
				return nil, err
			}
		}
		for _, ip := range n.IPRequest {
			if strings.Contains(ip, "/") {
				if _, _, err := net.ParseCIDR(ip); err != nil {
					return nil, err
				}
			} else if net.ParseIP(ip) == nil {
				return nil, fmt.Errorf("ip %q", ip)
			}
		}
		if n.DeprecatedInterfaceRequest != "" && n.InterfaceRequest == "" {
			n.InterfaceRequest = n.DeprecatedInterfaceRequest
		}
	}
	return networks, nil
}

// validInterface is libcni's rule for interface names, applied to every CNI ADD.
func validInterface(name string) bool {
	if len(name) == 0 || len(name) > 15 || name == "." || name == ".." {
		return false
	}
	for _, r := range name {
		if r == '/' || r == ':' || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

var (
	errNested   = errors.New("nested too deep")
	errMany     = errors.New("too many attachments")
	errLong     = errors.New("list too long")
	errArgs     = errors.New("cni-args too large")
	errSyntax   = errors.New("syntax")
	boundedKeys = []string{"ips", "default-route", "portMappings"}
)

// walk reads the rest of the value whose first token is first, at nesting depth depth
// (the outer list is 1). items counts the elements of a list value; onKey sees each key of an
// object value and may return a counter for that key's list value.
func walk(decoder *json.Decoder, first json.Token, depth int, items *int,
	onKey func(string) *int) error {
	delim, ok := first.(json.Delim)
	if !ok {
		return nil
	}
	if depth > maxJSONDepth {
		return errNested
	}
	for decoder.More() {
		var counter *int
		if delim == '{' {
			key, err := decoder.Token()
			if err != nil {
				return errSyntax
			}
			if onKey != nil {
				counter = onKey(key.(string))
			}
		}
		token, err := decoder.Token()
		if err != nil {
			return errSyntax
		}
		if items != nil {
			*items++
		}
		if counter != nil && counter == cniArgs {
			values := 0
			if err := countValues(decoder, token, depth+1, &values, true); err != nil {
				return err
			}
			if values > maxCNIArgs {
				return errArgs
			}
			continue
		}
		var inner func(string) *int
		if depth == 1 && items != nil {
			inner = func(key string) *int {
				if strings.EqualFold(key, "cni-args") {
					return cniArgs
				}
				for _, bounded := range boundedKeys {
					if strings.EqualFold(key, bounded) {
						return new(int)
					}
				}
				return nil
			}
		}
		if delim, isDelim := token.(json.Delim); !isDelim || delim != '[' {
			counter = nil
		}
		if err := walk(decoder, token, depth+1, counter, inner); err != nil {
			return err
		}
		if counter != nil && *counter > maxListItems {
			return errLong
		}
		if depth == 1 && items != nil && *items > maxAttachments {
			return errMany
		}
	}
	if _, err := decoder.Token(); err != nil {
		return errSyntax
	}
	return nil
}

// cniArgs marks the key whose value countValues counts instead of walk.
var cniArgs = new(int)

// countValues reads the rest of the value whose first token is first and counts the values
// nested in it (not the value itself when root), object keys excluded.
func countValues(decoder *json.Decoder, first json.Token, depth int, values *int, root bool) error {
	if !root {
		*values++
	}
	delim, ok := first.(json.Delim)
	if !ok {
		return nil
	}
	if depth > maxJSONDepth {
		return errNested
	}
	for decoder.More() {
		if delim == '{' {
			if _, err := decoder.Token(); err != nil {
				return errSyntax
			}
		}
		token, err := decoder.Token()
		if err != nil {
			return errSyntax
		}
		if err := countValues(decoder, token, depth+1, values, false); err != nil {
			return err
		}
	}
	if _, err := decoder.Token(); err != nil {
		return errSyntax
	}
	return nil
}

// jsonBounds checks nesting, entries, and the items of each ips, default-route and
// portMappings list of an entry (every key, duplicates included).
func jsonBounds(value string) error {
	decoder := json.NewDecoder(strings.NewReader(value))
	first, err := decoder.Token()
	if err != nil {
		return nil
	}
	entries := 0
	if delim, ok := first.(json.Delim); !ok || delim != '[' {
		err = walk(decoder, first, 1, nil, nil)
	} else {
		err = walk(decoder, first, 1, &entries, nil)
	}
	if err == errSyntax {
		return nil // Multus's own parse reports it
	}
	return err
}

// bounds applies the webhook's own limits, which Multus does not have.
func bounds(value string) error {
	if !strings.ContainsAny(value, "[{\"") {
		if strings.Count(value, ",")+1 > maxAttachments {
			return errors.New("too many attachments")
		}
		return nil
	}
	if strings.Count(value, "[")+strings.Count(value, "{") > maxBrackets {
		return errors.New("too many brackets")
	}
	return jsonBounds(value)
}

// asciiFolds lists the non-ASCII runes that Go's case folding matches with an ASCII letter.
func asciiFolds() answer {
	found := []entry{}
	for r := rune(0x80); r <= unicode.MaxRune; r++ {
		for _, letter := range "abcdefghijklmnopqrstuvwxyz" {
			if strings.EqualFold(string(r), string(letter)) {
				found = append(found, entry{Name: string(r), Interface: string(letter)})
			}
		}
	}
	return answer{OK: true, Entries: found}
}

func read(req request) answer {
	if req.Mode == "fold" {
		return asciiFolds()
	}
	if req.Mode == "networks" && req.Value == "" {
		return answer{OK: true, Entries: []entry{}}
	}
	if err := bounds(req.Value); err != nil {
		return answer{Error: err.Error()}
	}
	networks, err := parse(req.Value, req.Namespace)
	if err != nil {
		return answer{Error: err.Error()}
	}
	if req.Mode == "default" && len(networks) != 1 {
		return answer{Error: "default-network names other than one network"}
	}
	entries := []entry{}
	for _, n := range networks {
		if n.Name == "" || len(n.Name) > 253 || !subdomain.MatchString(n.Name) {
			return answer{Error: fmt.Sprintf("no NAD can be called %q", n.Name)}
		}
		if len(n.Namespace) > 63 || !label.MatchString(n.Namespace) {
			return answer{Error: fmt.Sprintf("no namespace can be called %q", n.Namespace)}
		}
		if n.InterfaceRequest != "" && !validInterface(n.InterfaceRequest) {
			return answer{Error: fmt.Sprintf("libcni refuses interface %q", n.InterfaceRequest)}
		}
		e := entry{
			Namespace: n.Namespace, Name: n.Name, Interface: n.InterfaceRequest,
			MAC: n.MacRequest, GUID: n.InfinibandGUIDRequest, DeviceID: n.DeviceID,
		}
		if n.IPRequest != nil {
			ips := append([]string{}, n.IPRequest...)
			e.IPs = &ips
		}
		if n.GatewayRequest != nil {
			routes := []string{}
			for _, ip := range *n.GatewayRequest {
				routes = append(routes, ip.String())
			}
			e.Routes = &routes
		}
		entries = append(entries, e)
	}
	return answer{OK: true, Entries: entries}
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	out := bufio.NewWriter(os.Stdout)
	encoder := json.NewEncoder(out)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			fmt.Fprintln(os.Stderr, "bad request line:", err)
			os.Exit(2)
		}
		if err := encoder.Encode(read(req)); err != nil {
			os.Exit(2)
		}
		out.Flush()
	}
}
