package persist

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"time"
)

const recHeader = 24

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var errRecord = errors.New("bad record")

// appendRecord appends the encoding of m to dst.
func appendRecord(dst []byte, m Mutation) []byte {
	exp := m.ExpireAt
	var dur uint8
	switch m.Op {
	case OpDefine:
		dur, exp = uint8(m.Durability), int64(m.Expire)
	case OpSetMeta:
		dur = m.Flags
	}
	return encodeOp(dst, uint8(m.Op), dur, m.Cache, []byte(m.Key), m.Value, exp)
}

// encodeOp appends a record with the log's op code op to dst.
func encodeOp(dst []byte, op uint8, dur uint8, name string, key, value []byte, exp int64) []byte {
	start := len(dst)
	var h [recHeader]byte
	h[4], h[5] = op, dur
	binary.LittleEndian.PutUint16(h[6:], uint16(len(name)))
	binary.LittleEndian.PutUint16(h[8:], uint16(len(key)))
	binary.LittleEndian.PutUint32(h[12:], uint32(len(value)))
	binary.LittleEndian.PutUint64(h[16:], uint64(exp))
	dst = append(dst, h[:]...)
	dst = append(dst, name...)
	dst = append(dst, key...)
	dst = append(dst, value...)
	binary.LittleEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], castagnoli))
	return dst
}

// decodeRecord decodes one record (the whole of b) and checks its checksum.
// The mutation's strings and value are copies.
func decodeRecord(b []byte) (Mutation, error) {
	var m Mutation
	if len(b) < recHeader {
		return m, errRecord
	}
	if binary.LittleEndian.Uint32(b) != crc32.Checksum(b[4:], castagnoli) {
		return m, errRecord
	}
	nlen := int(binary.LittleEndian.Uint16(b[6:]))
	klen := int(binary.LittleEndian.Uint16(b[8:]))
	vlen := int(binary.LittleEndian.Uint32(b[12:]))
	exp := int64(binary.LittleEndian.Uint64(b[16:]))
	if recHeader+nlen+klen+vlen != len(b) || nlen == 0 {
		return m, errRecord
	}
	m.Cache = string(b[recHeader : recHeader+nlen])
	m.Op = Op(b[4])
	switch m.Op {
	case OpDefine:
		m.Expire, m.Durability = time.Duration(exp), Durability(b[5])
		if exp < 0 || m.Durability > Always || klen != 0 {
			return m, errRecord
		}
		if vlen > 0 { // the cache's further options (Mutation.Value)
			m.Value = append([]byte{}, b[recHeader+nlen:]...)
		}
		return m, nil
	case OpSet, OpSetMeta:
		m.ExpireAt = exp
		m.Value = append([]byte{}, b[recHeader+nlen+klen:]...)
		if m.Op == OpSetMeta {
			if m.Flags = b[5]; m.Flags == 0 {
				return m, errRecord
			}
		}
	case OpDel, OpExpire, OpEvict:
	default:
		return m, errRecord
	}
	if klen == 0 {
		return m, errRecord
	}
	m.Key = string(b[recHeader+nlen : recHeader+nlen+klen])
	return m, nil
}
