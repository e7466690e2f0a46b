// SPDX-License-Identifier: Apache-2.0
// Exact version, not a range: the committed artifact must be reproducible from this file, and
// tools/chain/package.json pins the same solc (a test compares both).
pragma solidity 0.8.30;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";

/// @title ERC-5539 Revocation List Registry
/// @notice Every address owns a namespace; in it, revocation lists (bytes32) hold revocation keys
/// (bytes32) that are revoked or not. Only a list's owner -- initially the namespace address
/// itself -- or a delegate the owner named may change a list; nobody else.
/// @dev Every external function, parameter order and event below is the one ERC-5539 specifies,
/// including its parameter names (`removeListDelegate(delegate, owner, ...)` and the lowercase
/// `revocationlist` of `RevocationListStatusChanged` are the ERC's spelling; selectors and
/// topics do not depend on names, but the ABI should read like the ERC). The ERC's name for the
/// contract is used as is. Additions, all read-only: `identityIsOwner`, `identityIsDelegate`,
/// `listOwner`, `nonces` and ERC-5267 `eip712Domain`, which clients need to build the signed
/// variants and to explain a refusal before sending a transaction.
contract EthereumRevocationRegistry is EIP712, Nonces {
    // --- ERC-5539 events (names, order and `indexed` exactly as in the ERC) -----------------

    event RevocationStatusChanged(
        address indexed namespace,
        bytes32 indexed revocationList,
        bytes32 indexed revocationKey,
        bool revoked
    );

    event RevocationListOwnerChanged(
        address indexed namespace,
        bytes32 indexed revocationList,
        address indexed newOwner
    );

    event RevocationListDelegateAdded(
        address indexed namespace,
        bytes32 indexed revocationList,
        address indexed delegate
    );

    event RevocationListDelegateRemoved(
        address indexed namespace,
        bytes32 indexed revocationList,
        address indexed delegate
    );

    event RevocationListStatusChanged(
        address indexed namespace,
        bytes32 indexed revocationlist,
        bool revoked
    );

    // --- errors: typed so that clients can tell "not allowed" from every other failure -------

    /// `caller` is not the current owner of the list.
    error NotListOwner(address namespace, bytes32 revocationList, address caller);
    /// `caller` is not a delegate of the list under its current owner.
    error NotListDelegate(address namespace, bytes32 revocationList, address caller);
    /// The signature of a `*Signed` call was made by someone other than the `signer` it names.
    error InvalidSigner(address signer, address recovered);
    /// `changeStatusesInList*` got arrays of different lengths.
    error LengthMismatch(uint256 revoked, uint256 revocationKeys);
    /// The zero address cannot own a list: in storage it means "the namespace owns it".
    error ZeroAddress();

    // --- EIP-712 --------------------------------------------------------------------------
    //
    // ERC-5539 requires the signed variants to use EIP-712 and to be usable only once (a nonce
    // per signer) but does not write down the struct types. Each struct below is the ERC
    // function's own parameter list, in the ERC's order and with its names, without
    // `signature` and with the signer's `nonce` appended; types are EIP-712's canonical names
    // (`uint256`, not `uint`), so any EIP-712 library produces the same hash. The domain
    // (name, version, chainId, verifyingContract) stops replays on other chains and other
    // deployments, as the ERC's security considerations ask.

    bytes32 private constant CHANGE_STATUS_TYPEHASH = keccak256(
        "ChangeStatus(bool revoked,address namespace,bytes32 revocationList,bytes32 revocationKey,address signer,uint256 nonce)"
    );
    bytes32 private constant CHANGE_STATUS_DELEGATED_TYPEHASH = keccak256(
        "ChangeStatusDelegated(bool revoked,address namespace,bytes32 revocationList,bytes32 revocationKey,address signer,uint256 nonce)"
    );
    bytes32 private constant CHANGE_STATUSES_IN_LIST_TYPEHASH = keccak256(
        "ChangeStatusesInList(bool[] revoked,address namespace,bytes32 revocationList,bytes32[] revocationKeys,address signer,uint256 nonce)"
    );
    bytes32 private constant CHANGE_STATUSES_IN_LIST_DELEGATED_TYPEHASH = keccak256(
        "ChangeStatusesInListDelegated(bool[] revoked,address namespace,bytes32 revocationList,bytes32[] revocationKeys,address signer,uint256 nonce)"
    );
    bytes32 private constant CHANGE_LIST_STATUS_TYPEHASH = keccak256(
        "ChangeListStatus(bool revoked,address namespace,bytes32 revocationList,address signer,uint256 nonce)"
    );
    bytes32 private constant CHANGE_LIST_OWNER_TYPEHASH = keccak256(
        "ChangeListOwner(address newOwner,address namespace,bytes32 revocationList,address signer,uint256 nonce)"
    );
    bytes32 private constant ADD_LIST_DELEGATE_TYPEHASH = keccak256(
        "AddListDelegate(address delegate,address namespace,bytes32 revocationList,address signer,uint256 nonce)"
    );
    bytes32 private constant REMOVE_LIST_DELEGATE_TYPEHASH = keccak256(
        "RemoveListDelegate(address delegate,address namespace,bytes32 revocationList,address signer,uint256 nonce)"
    );

    // --- state ----------------------------------------------------------------------------

    mapping(address namespace => mapping(bytes32 list => mapping(bytes32 key => bool))) private _revoked;
    mapping(address namespace => mapping(bytes32 list => bool)) private _listRevoked;

    // address(0) means "the namespace address owns the list": every address owns all lists of
    // its namespace from the start without claiming them (ERC-5539, Rationale).
    mapping(address namespace => mapping(bytes32 list => address)) private _owners;

    // Delegates are kept per ownership epoch, and a change of owner starts a new epoch. The
    // ERC says a delegate "has to be granted by the current owner"; without the epoch a new
    // owner would silently inherit writers chosen by the previous one.
    mapping(address namespace => mapping(bytes32 list => uint256)) private _ownerEpoch;
    mapping(address namespace => mapping(bytes32 list => mapping(uint256 epoch => mapping(address => bool))))
        private _delegates;

    constructor() EIP712("EthereumRevocationRegistry", "1") {}

    // --- revocation management --------------------------------------------------------------

    /// @notice Whether `key` is revoked in `list` of `namespace`. A revoked list revokes all
    /// its keys (the ERC allows isRevoked to respect the list status; changeListStatus says
    /// its keys are then "considered revoked as well").
    function isRevoked(address namespace, bytes32 list, bytes32 key) public view returns (bool) {
        return _listRevoked[namespace][list] || _revoked[namespace][list][key];
    }

    function changeStatus(bool revoked, address namespace, bytes32 revocationList, bytes32 revocationKey)
        public
    {
        _requireOwner(namespace, revocationList, msg.sender);
        _changeStatus(revoked, namespace, revocationList, revocationKey);
    }

    function changeStatusSigned(
        bool revoked,
        address namespace,
        bytes32 revocationList,
        bytes32 revocationKey,
        address signer,
        bytes calldata signature
    ) public {
        _useSignature(
            keccak256(
                abi.encode(
                    CHANGE_STATUS_TYPEHASH, revoked, namespace, revocationList, revocationKey, signer, nonces(signer)
                )
            ),
            signer,
            signature
        );
        _requireOwner(namespace, revocationList, signer);
        _changeStatus(revoked, namespace, revocationList, revocationKey);
    }

    function changeStatusDelegated(bool revoked, address namespace, bytes32 revocationList, bytes32 revocationKey)
        public
    {
        _requireDelegate(namespace, revocationList, msg.sender);
        _changeStatus(revoked, namespace, revocationList, revocationKey);
    }

    function changeStatusDelegatedSigned(
        bool revoked,
        address namespace,
        bytes32 revocationList,
        bytes32 revocationKey,
        address signer,
        bytes calldata signature
    ) public {
        _useSignature(
            keccak256(
                abi.encode(
                    CHANGE_STATUS_DELEGATED_TYPEHASH,
                    revoked,
                    namespace,
                    revocationList,
                    revocationKey,
                    signer,
                    nonces(signer)
                )
            ),
            signer,
            signature
        );
        _requireDelegate(namespace, revocationList, signer);
        _changeStatus(revoked, namespace, revocationList, revocationKey);
    }

    function changeStatusesInList(
        bool[] memory revoked,
        address namespace,
        bytes32 revocationList,
        bytes32[] memory revocationKeys
    ) public {
        _requireOwner(namespace, revocationList, msg.sender);
        _changeStatusesInList(revoked, namespace, revocationList, revocationKeys);
    }

    function changeStatusesInListSigned(
        bool[] memory revoked,
        address namespace,
        bytes32 revocationList,
        bytes32[] memory revocationKeys,
        address signer,
        bytes calldata signature
    ) public {
        _useSignature(
            _hashStatuses(CHANGE_STATUSES_IN_LIST_TYPEHASH, revoked, namespace, revocationList, revocationKeys, signer),
            signer,
            signature
        );
        _requireOwner(namespace, revocationList, signer);
        _changeStatusesInList(revoked, namespace, revocationList, revocationKeys);
    }

    function changeStatusesInListDelegated(
        bool[] memory revoked,
        address namespace,
        bytes32 revocationList,
        bytes32[] memory revocationKeys
    ) public {
        _requireDelegate(namespace, revocationList, msg.sender);
        _changeStatusesInList(revoked, namespace, revocationList, revocationKeys);
    }

    function changeStatusesInListDelegatedSigned(
        bool[] memory revoked,
        address namespace,
        bytes32 revocationList,
        bytes32[] memory revocationKeys,
        address signer,
        bytes calldata signature
    ) public {
        _useSignature(
            _hashStatuses(
                CHANGE_STATUSES_IN_LIST_DELEGATED_TYPEHASH, revoked, namespace, revocationList, revocationKeys, signer
            ),
            signer,
            signature
        );
        _requireDelegate(namespace, revocationList, signer);
        _changeStatusesInList(revoked, namespace, revocationList, revocationKeys);
    }

    // --- revocation list management -----------------------------------------------------------

    function listIsRevoked(address namespace, bytes32 revocationList) public view returns (bool) {
        return _listRevoked[namespace][revocationList];
    }

    function changeListStatus(bool revoked, address namespace, bytes32 revocationList) public {
        _requireOwner(namespace, revocationList, msg.sender);
        _changeListStatus(revoked, namespace, revocationList);
    }

    function changeListStatusSigned(
        bool revoked,
        address namespace,
        bytes32 revocationList,
        address signer,
        bytes calldata signature
    ) public {
        _useSignature(
            keccak256(abi.encode(CHANGE_LIST_STATUS_TYPEHASH, revoked, namespace, revocationList, signer, nonces(signer))),
            signer,
            signature
        );
        _requireOwner(namespace, revocationList, signer);
        _changeListStatus(revoked, namespace, revocationList);
    }

    // --- owner management ---------------------------------------------------------------------

    function changeListOwner(address newOwner, address namespace, bytes32 revocationList) public {
        _requireOwner(namespace, revocationList, msg.sender);
        _changeListOwner(newOwner, namespace, revocationList);
    }

    function changeListOwnerSigned(
        address newOwner,
        address namespace,
        bytes32 revocationList,
        address signer,
        bytes calldata signature
    ) public {
        _useSignature(
            keccak256(
                abi.encode(CHANGE_LIST_OWNER_TYPEHASH, newOwner, namespace, revocationList, signer, nonces(signer))
            ),
            signer,
            signature
        );
        _requireOwner(namespace, revocationList, signer);
        _changeListOwner(newOwner, namespace, revocationList);
    }

    // --- delegation management ----------------------------------------------------------------
    //
    // ERC-5539's delegate functions carry no expiry: a delegate keeps its rights until the
    // owner removes it (or the list changes owner, see _ownerEpoch).

    function addListDelegate(address delegate, address namespace, bytes32 revocationList) public {
        _requireOwner(namespace, revocationList, msg.sender);
        _setDelegate(true, delegate, namespace, revocationList);
    }

    function addListDelegateSigned(
        address delegate,
        address namespace,
        bytes32 revocationList,
        address signer,
        bytes calldata signature
    ) public {
        _useSignature(
            keccak256(
                abi.encode(ADD_LIST_DELEGATE_TYPEHASH, delegate, namespace, revocationList, signer, nonces(signer))
            ),
            signer,
            signature
        );
        _requireOwner(namespace, revocationList, signer);
        _setDelegate(true, delegate, namespace, revocationList);
    }

    /// @dev `owner` is the ERC's name for this parameter; it is the list's namespace, as in
    /// `removeListDelegateSigned`.
    function removeListDelegate(address delegate, address owner, bytes32 revocationList) public {
        _requireOwner(owner, revocationList, msg.sender);
        _setDelegate(false, delegate, owner, revocationList);
    }

    function removeListDelegateSigned(
        address delegate,
        address namespace,
        bytes32 revocationList,
        address signer,
        bytes calldata signature
    ) public {
        _useSignature(
            keccak256(
                abi.encode(REMOVE_LIST_DELEGATE_TYPEHASH, delegate, namespace, revocationList, signer, nonces(signer))
            ),
            signer,
            signature
        );
        _requireOwner(namespace, revocationList, signer);
        _setDelegate(false, delegate, namespace, revocationList);
    }

    // --- read-only additions ------------------------------------------------------------------

    /// @notice The current owner of a list: the namespace address until it hands the list on.
    function listOwner(address namespace, bytes32 revocationList) public view returns (address) {
        address owner = _owners[namespace][revocationList];
        return owner == address(0) ? namespace : owner;
    }

    function identityIsOwner(address namespace, bytes32 revocationList, address identity)
        public
        view
        returns (bool)
    {
        return identity == listOwner(namespace, revocationList);
    }

    function identityIsDelegate(address namespace, bytes32 revocationList, address identity)
        public
        view
        returns (bool)
    {
        return _delegates[namespace][revocationList][_ownerEpoch[namespace][revocationList]][identity];
    }

    // --- internals ----------------------------------------------------------------------------

    function _requireOwner(address namespace, bytes32 revocationList, address identity) private view {
        if (!identityIsOwner(namespace, revocationList, identity)) {
            revert NotListOwner(namespace, revocationList, identity);
        }
    }

    function _requireDelegate(address namespace, bytes32 revocationList, address identity) private view {
        if (!identityIsDelegate(namespace, revocationList, identity)) {
            revert NotListDelegate(namespace, revocationList, identity);
        }
    }

    /// Checks that `signer` signed `structHash` under this contract's domain and burns the
    /// signer's nonce, so the same signed payload can be sent only once, by anyone.
    function _useSignature(bytes32 structHash, address signer, bytes calldata signature) private {
        // ECDSA.recover rejects malleable (high-s) signatures and never returns address(0).
        address recovered = ECDSA.recover(_hashTypedDataV4(structHash), signature);
        if (recovered != signer) {
            revert InvalidSigner(signer, recovered);
        }
        _useNonce(signer);
    }

    function _hashStatuses(
        bytes32 typehash,
        bool[] memory revoked,
        address namespace,
        bytes32 revocationList,
        bytes32[] memory revocationKeys,
        address signer
    ) private view returns (bytes32) {
        // EIP-712 encodes an array as the hash of its elements' 32-byte encodings, which is
        // what abi.encodePacked produces for arrays (each element padded to 32 bytes).
        return keccak256(
            abi.encode(
                typehash,
                keccak256(abi.encodePacked(revoked)),
                namespace,
                revocationList,
                keccak256(abi.encodePacked(revocationKeys)),
                signer,
                nonces(signer)
            )
        );
    }

    function _changeStatus(bool revoked, address namespace, bytes32 revocationList, bytes32 revocationKey) private {
        _revoked[namespace][revocationList][revocationKey] = revoked;
        emit RevocationStatusChanged(namespace, revocationList, revocationKey, revoked);
    }

    function _changeStatusesInList(
        bool[] memory revoked,
        address namespace,
        bytes32 revocationList,
        bytes32[] memory revocationKeys
    ) private {
        if (revoked.length != revocationKeys.length) {
            revert LengthMismatch(revoked.length, revocationKeys.length);
        }
        for (uint256 i = 0; i < revoked.length; ++i) {
            _changeStatus(revoked[i], namespace, revocationList, revocationKeys[i]);
        }
    }

    function _changeListStatus(bool revoked, address namespace, bytes32 revocationList) private {
        _listRevoked[namespace][revocationList] = revoked;
        emit RevocationListStatusChanged(namespace, revocationList, revoked);
    }

    function _changeListOwner(address newOwner, address namespace, bytes32 revocationList) private {
        if (newOwner == address(0)) {
            revert ZeroAddress();
        }
        // Handing a list back to its namespace stores the "namespace owns it" default.
        _owners[namespace][revocationList] = newOwner == namespace ? address(0) : newOwner;
        unchecked {
            ++_ownerEpoch[namespace][revocationList];
        }
        emit RevocationListOwnerChanged(namespace, revocationList, newOwner);
    }

    function _setDelegate(bool enabled, address delegate, address namespace, bytes32 revocationList) private {
        _delegates[namespace][revocationList][_ownerEpoch[namespace][revocationList]][delegate] = enabled;
        if (enabled) {
            emit RevocationListDelegateAdded(namespace, revocationList, delegate);
        } else {
            emit RevocationListDelegateRemoved(namespace, revocationList, delegate);
        }
    }
}
