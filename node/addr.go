package node

import (
	"errors"
	"fmt"
	"net"
)

// AdvertiseAddr decides the address other nodes reach this one at: the
// advertise address if given (a missing port is taken from listen; an
// interface name stands for its first IPv4 address), else the listen
// address, with an unspecified host replaced by this host's first
// non-loopback IPv4 address.
func AdvertiseAddr(advertise, listen string) (string, error) {
	lhost, lport, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("listen address %q: %w", listen, err)
	}
	if advertise == "" {
		advertise = lhost
	}
	host, port, err := net.SplitHostPort(advertise)
	if err != nil {
		host, port = advertise, lport
	}
	if iface, err := net.InterfaceByName(host); err == nil {
		ip, err := interfaceIPv4(iface)
		if err != nil {
			return "", err
		}
		host = ip.String()
	}
	if host == "" || net.ParseIP(host).IsUnspecified() {
		ip, err := firstIPv4()
		if err != nil {
			return "", err
		}
		host = ip.String()
	}
	return net.JoinHostPort(host, port), nil
}

func interfaceIPv4(iface *net.Interface) (net.IP, error) {
	addrs, err := iface.Addrs()
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", iface.Name, err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return ipn.IP, nil
		}
	}
	return nil, fmt.Errorf("interface %s has no IPv4 address", iface.Name)
}

func firstIPv4() (net.IP, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || iface.Flags&net.FlagLoopback != 0 {
			continue
		}
		if ip, err := interfaceIPv4(&iface); err == nil {
			return ip, nil
		}
	}
	return nil, errors.New("no non-loopback IPv4 address to advertise; set --advertise-remote-api")
}
